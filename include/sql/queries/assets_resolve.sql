-- assets_resolve: ids of active assets (ids = "all"), or which of the requested ids exist.
-- Params: ids (int[] or NULL for all active).
SELECT id FROM dim_assets
WHERE (%(ids)s::int[] IS NULL AND is_active) OR id = ANY(%(ids)s::int[])
ORDER BY id
