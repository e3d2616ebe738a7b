-- audit_validation_failed_assets: assets with at least one validation FAIL in a run
-- (0 = a cross-asset check). Params: run_id.
SELECT DISTINCT asset_id FROM validation_results
WHERE run_id = %(run_id)s AND severity = 'FAIL'
ORDER BY asset_id
