-- assets_resolve: ids of active assets with data (ids = "all"), or which of the requested ids
-- exist. Params: ids (int[] or NULL for all). "With data" = first_seen set by a load: rows
-- seeded or imported into the registry (ta_lab2 assets import) are not refreshed until
-- candles for them arrive (docs/decisions.md D-realdata-2).
SELECT id FROM dim_assets
WHERE (%(ids)s::int[] IS NULL AND is_active AND first_seen IS NOT NULL) OR id = ANY(%(ids)s::int[])
ORDER BY id
