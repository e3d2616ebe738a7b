-- bars_1d_prev: per asset of a batch, its last stored 1d row strictly before a timestamp
-- (assets without one are absent). Params: ids, before_ts (arrays aligned by position).
SELECT k.id, p.bar_seq, p.time_open
FROM unnest(%(ids)s::integer[], %(before_ts)s::timestamptz[]) AS k(id, before_ts)
CROSS JOIN LATERAL (SELECT b.bar_seq, b.time_open FROM cmc_price_bars_1d b
                    WHERE b.id = k.id AND b."timestamp" < k.before_ts
                    ORDER BY b."timestamp" DESC LIMIT 1) AS p
