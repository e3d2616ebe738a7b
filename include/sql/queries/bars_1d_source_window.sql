-- bars_1d_source_window: source rows of a batch of assets, each visible at its cutoff, from its
-- start on, ordered by (id, timestamp). Read through COPY as CSV (store/bars1d.py): instants as
-- epoch microseconds, price_nulls tells SQL NULL prices from NaN (bits: 1 open, 2 high, 4 low, 8 close).
-- One primary-key range scan per asset (LATERAL, sargable bounds; see bars_1d_window).
-- Params: ids, from_ts (NULL = whole history), cutoffs (exclusive): arrays aligned by position.
SELECT s.id, s.name,
       (extract(epoch FROM s.timeopen) * 1000000)::int8 AS timeopen,
       (extract(epoch FROM s.timeclose) * 1000000)::int8 AS timeclose,
       (extract(epoch FROM s.timehigh) * 1000000)::int8 AS timehigh,
       (extract(epoch FROM s.timelow) * 1000000)::int8 AS timelow,
       (extract(epoch FROM s."timestamp") * 1000000)::int8 AS "timestamp",
       s.open, s.high, s.low, s.close, s.volume, s.marketcap, s.source_file,
       (extract(epoch FROM s.load_ts) * 1000000)::int8 AS load_ts,
       (s.open IS NULL)::int | (s.high IS NULL)::int << 1 | (s.low IS NULL)::int << 2
           | (s.close IS NULL)::int << 3 AS price_nulls
FROM unnest(%(ids)s::integer[], %(from_ts)s::timestamptz[], %(cutoffs)s::timestamptz[]) AS k(id, from_ts, cutoff)
CROSS JOIN LATERAL (SELECT * FROM cmc_price_histories7
                    WHERE id = k.id AND "timestamp" < k.cutoff
                      AND "timestamp" >= coalesce(k.from_ts, '-infinity') OFFSET 0) AS s
ORDER BY s.id, s."timestamp"
