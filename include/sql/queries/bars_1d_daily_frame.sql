-- bars_1d_daily_frame: the daily grid of one asset (accepted 1d rows) from a timestamp on.
-- Params: id, from_ts (NULL = whole history).
SELECT "timestamp", time_open, time_close, time_high, time_low, open, high, low, close, volume, market_cap
FROM cmc_price_bars_1d
WHERE id = %(id)s AND (%(from_ts)s::timestamptz IS NULL OR "timestamp" >= %(from_ts)s::timestamptz)
ORDER BY "timestamp"
