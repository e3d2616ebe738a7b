-- assets_upsert: register or refresh one asset after a load. Params: id, symbol, name.
-- first_seen/last_seen follow the source table; a registry row (seed or import) keeps its
-- symbol, name, slug and is_active.
INSERT INTO dim_assets (id, symbol, name, is_active, first_seen, last_seen)
SELECT %(id)s, %(symbol)s, %(name)s, true, min("timestamp"), max("timestamp")
FROM cmc_price_histories7 WHERE id = %(id)s
HAVING count(*) > 0
ON CONFLICT (id) DO UPDATE SET
    first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, updated_at = now()
