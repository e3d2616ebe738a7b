-- bars_1d_tail: for each (id, cut) pair, the asset's grid days after the cut instant
-- (time_close > cut, is_new) and the up to two grid days just before them (the trailing
-- median of the EMA bounds needs them), in grid order, with the asset's first time_open (its
-- first grid day fixes rolling and calendar windows). Params: ids, cuts (parallel arrays).
SELECT k.id, t.time_close, t.time_open, t.close, t.is_new,
       (SELECT f.time_open FROM cmc_price_bars_1d f WHERE f.id = k.id ORDER BY f."timestamp" LIMIT 1) AS first_open
FROM unnest(%(ids)s::integer[], %(cuts)s::timestamptz[]) AS k(id, cut)
CROSS JOIN LATERAL (
    (SELECT b."timestamp", b.time_close, b.time_open, b.close, true AS is_new
     FROM cmc_price_bars_1d b WHERE b.id = k.id AND b.time_close > k.cut)
    UNION ALL
    (SELECT b."timestamp", b.time_close, b.time_open, b.close, false
     FROM cmc_price_bars_1d b WHERE b.id = k.id AND b.time_close <= k.cut
     ORDER BY b."timestamp" DESC LIMIT 2)
) AS t
ORDER BY k.id, t."timestamp"
