-- source_upsert: move staged rows (temp table _stage_source) into cmc_price_histories7.
-- Inserts new (id, "timestamp") keys, updates rows whose values changed (and then stamps
-- load_ts so the 1d builder sees the revision), leaves identical rows untouched.
-- Returns ONE row: (inserted, updated) counts (counted here, so a million-row file does not
-- ship a million flags to the client).
WITH up AS (
INSERT INTO cmc_price_histories7 AS t (id, name, timeopen, timeclose, timehigh, timelow, "timestamp",
    open, high, low, close, volume, marketcap, circulating_supply, source_file)
SELECT id, name, timeopen, timeclose, timehigh, timelow, "timestamp", open, high, low, close,
    volume, marketcap, circulating_supply, source_file
FROM _stage_source
ON CONFLICT (id, "timestamp") DO UPDATE SET
    name = EXCLUDED.name, timeopen = EXCLUDED.timeopen, timeclose = EXCLUDED.timeclose,
    timehigh = EXCLUDED.timehigh, timelow = EXCLUDED.timelow, open = EXCLUDED.open,
    high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    marketcap = EXCLUDED.marketcap,
    circulating_supply = EXCLUDED.circulating_supply, source_file = EXCLUDED.source_file, load_ts = now()
WHERE (t.name, t.timeopen, t.timeclose, t.timehigh, t.timelow, t.open, t.high, t.low, t.close,
       t.volume, t.marketcap, t.circulating_supply)
  IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.timeopen, EXCLUDED.timeclose, EXCLUDED.timehigh, EXCLUDED.timelow,
       EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.marketcap,
       EXCLUDED.circulating_supply)
RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated FROM up
