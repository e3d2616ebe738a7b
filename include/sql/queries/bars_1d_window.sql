-- bars_1d_window: stored 1d rows of a batch of assets, each from its start on (NULL = all).
-- Params: ids, from_ts (arrays aligned by position).
SELECT b.id, b.tf, b.bar_seq, b."timestamp", b.time_open, b.time_close, b.time_high, b.time_low, b.open,
       b.high, b.low, b.close, b.volume, b.market_cap, b.is_partial_start, b.is_partial_end,
       b.is_missing_days, b.count_missing_days
FROM unnest(%(ids)s::integer[], %(from_ts)s::timestamptz[]) AS k(id, from_ts)
JOIN cmc_price_bars_1d b ON b.id = k.id AND (k.from_ts IS NULL OR b."timestamp" >= k.from_ts)
ORDER BY b.id, b."timestamp"
