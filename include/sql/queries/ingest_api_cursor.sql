-- ingest_api_cursor: the assets the API step fetches and the last source instant of each.
-- Params: ids (int[], or NULL = every active asset with data). Returns id, name, last_ts (NULL
-- when the asset has no candles yet: the API fills days after the last one only).
SELECT a.id, a.name, (SELECT max(s."timestamp") FROM cmc_price_histories7 s WHERE s.id = a.id) AS last_ts
FROM dim_assets a
WHERE (%(ids)s::int[] IS NULL AND a.is_active AND a.first_seen IS NOT NULL) OR a.id = ANY(%(ids)s::int[])
ORDER BY a.id
