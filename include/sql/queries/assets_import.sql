-- assets_import: register one asset from a CoinMarketCap map or an id,symbol,name,slug CSV.
-- Params: id, symbol, name, slug, is_active. An existing row gets the map's symbol, name and
-- slug; its is_active (an operator's choice) and first/last_seen (the data) are kept.
INSERT INTO dim_assets AS a (id, symbol, name, slug, is_active)
VALUES (%(id)s, %(symbol)s, %(name)s, %(slug)s, %(is_active)s)
ON CONFLICT (id) DO UPDATE SET symbol = EXCLUDED.symbol, name = EXCLUDED.name,
    slug = COALESCE(EXCLUDED.slug, a.slug), updated_at = now()
