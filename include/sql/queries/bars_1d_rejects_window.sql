-- bars_1d_rejects_window: stored rejects of one asset from a timestamp on (NULL = all).
SELECT id, "timestamp", reason FROM cmc_price_bars_1d_rejects
WHERE id = %(id)s AND (%(from_ts)s::timestamptz IS NULL OR "timestamp" >= %(from_ts)s::timestamptz)
