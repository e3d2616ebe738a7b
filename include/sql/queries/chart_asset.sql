-- chart_asset: symbol and name of one asset. Params: id.
SELECT id, symbol, name FROM dim_assets WHERE id = %(id)s
