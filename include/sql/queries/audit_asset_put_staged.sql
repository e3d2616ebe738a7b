-- audit_asset_put_staged: audit_asset_put for every row of a staged batch (_stage_run_assets).
INSERT INTO refresh_run_assets (run_id, asset_id, component, status, rows_written, repairs, rejects,
    gaps, duration_s, error_text, details)
SELECT run_id, asset_id, component, status, rows_written, repairs, rejects, gaps, duration_s,
    error_text, details
FROM _stage_run_assets
ON CONFLICT (run_id, asset_id, component) DO UPDATE SET
    status = EXCLUDED.status, rows_written = EXCLUDED.rows_written, repairs = EXCLUDED.repairs,
    rejects = EXCLUDED.rejects, gaps = EXCLUDED.gaps, duration_s = EXCLUDED.duration_s,
    error_text = EXCLUDED.error_text, details = EXCLUDED.details, recorded_at = now()
