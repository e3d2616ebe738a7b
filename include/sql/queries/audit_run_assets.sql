-- audit_run_assets: every recorded (asset, component) result of one run. Params: run_id.
SELECT asset_id, component, status, rows_written, repairs, rejects, gaps, duration_s,
       error_text AS error, details
FROM refresh_run_assets WHERE run_id = %(run_id)s ORDER BY asset_id, component
