-- assets_seed: the built-in registry of well-known CoinMarketCap ids, applied with the schema.
-- Params (executemany): id, symbol, name, slug. Existing rows keep everything (an import or
-- an operator may have changed them) except a missing slug, which is filled.
INSERT INTO dim_assets (id, symbol, name, slug, is_active)
VALUES (%(id)s, %(symbol)s, %(name)s, %(slug)s, true)
ON CONFLICT (id) DO UPDATE SET slug = EXCLUDED.slug WHERE dim_assets.slug IS NULL
