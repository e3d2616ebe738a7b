-- assets_registry: every dim_assets row, for file-to-asset resolution and `assets list`.
SELECT id, symbol, name, slug, is_active, first_seen, last_seen FROM dim_assets ORDER BY id
