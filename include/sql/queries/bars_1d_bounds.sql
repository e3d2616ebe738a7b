-- bars_1d_bounds: first/last accepted 1d instant of one asset. Params: id.
SELECT min("timestamp") AS first_ts, max("timestamp") AS last_ts, count(*) AS n
FROM cmc_price_bars_1d WHERE id = %(id)s
