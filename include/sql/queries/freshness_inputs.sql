-- freshness_inputs: what the freshness gate compares, for every asset named (one row each).
-- Params: ids (int[]), cutoff (the run's as-of; source rows with "timestamp" < cutoff are visible).
SELECT k.id, s.last_src_ts,
       (SELECT max(h."timestamp") FROM cmc_price_histories7 h
         WHERE h.id = k.id AND h."timestamp" < %(cutoff)s) AS src_max_ts,
       s.id IS NOT NULL AS has_state
FROM unnest(%(ids)s::integer[]) AS k(id)
LEFT JOIN cmc_price_bars_1d_state AS s ON s.id = k.id
