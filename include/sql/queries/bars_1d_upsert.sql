-- bars_1d_upsert: move staged 1d rows (temp _stage_1d) into cmc_price_bars_1d.
INSERT INTO cmc_price_bars_1d (id, tf, bar_seq, "timestamp", time_open, time_close, time_high,
    time_low, open, high, low, close, volume, market_cap, is_partial_start, is_partial_end,
    is_missing_days, count_missing_days)
SELECT id, tf, bar_seq, "timestamp", time_open, time_close, time_high, time_low, open, high, low,
    close, volume, market_cap, is_partial_start, is_partial_end, is_missing_days, count_missing_days
FROM _stage_1d
ON CONFLICT (id, "timestamp") DO UPDATE SET
    bar_seq = EXCLUDED.bar_seq, time_open = EXCLUDED.time_open, time_close = EXCLUDED.time_close,
    time_high = EXCLUDED.time_high, time_low = EXCLUDED.time_low, open = EXCLUDED.open,
    high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    market_cap = EXCLUDED.market_cap, is_missing_days = EXCLUDED.is_missing_days,
    count_missing_days = EXCLUDED.count_missing_days, ingested_at = now()
