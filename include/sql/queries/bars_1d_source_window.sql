-- bars_1d_source_window: source rows of one asset visible at the cutoff, from a day on.
-- Params: id, from_ts (timestamptz; NULL = whole history), cutoff (timestamptz, exclusive).
SELECT id, name, timeopen, timeclose, timehigh, timelow, "timestamp", open, high, low, close,
       volume, marketcap, source_file, load_ts
FROM cmc_price_histories7
WHERE id = %(id)s AND "timestamp" < %(cutoff)s
  AND (%(from_ts)s::timestamptz IS NULL OR "timestamp" >= %(from_ts)s::timestamptz)
ORDER BY "timestamp"
