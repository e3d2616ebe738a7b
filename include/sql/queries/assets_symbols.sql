-- assets_symbols: the symbol of each given asset (labels of mapped task instances).
-- Params: ids (int array). Ids missing from dim_assets are simply absent.
SELECT id, symbol FROM dim_assets WHERE id = ANY(%(ids)s) AND symbol IS NOT NULL
