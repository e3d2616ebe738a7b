-- freshness_inputs: what the freshness gate compares for one asset.
-- Params: id, cutoff (the run's as-of; source rows with "timestamp" < cutoff are visible).
SELECT (SELECT last_src_ts FROM cmc_price_bars_1d_state WHERE id = %(id)s) AS last_src_ts,
       (SELECT max("timestamp") FROM cmc_price_histories7
         WHERE id = %(id)s AND "timestamp" < %(cutoff)s) AS src_max_ts,
       EXISTS (SELECT 1 FROM cmc_price_bars_1d_state WHERE id = %(id)s) AS has_state
