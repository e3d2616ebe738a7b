-- bars_1d_window: stored 1d rows of one asset from a timestamp on (NULL = all).
SELECT id, tf, bar_seq, "timestamp", time_open, time_close, time_high, time_low, open, high, low,
       close, volume, market_cap, is_partial_start, is_partial_end, is_missing_days, count_missing_days
FROM cmc_price_bars_1d
WHERE id = %(id)s AND (%(from_ts)s::timestamptz IS NULL OR "timestamp" >= %(from_ts)s::timestamptz)
ORDER BY "timestamp"
