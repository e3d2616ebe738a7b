-- audit_asset_put: record (or overwrite, on retry/clear) one (run, asset, component) result.
INSERT INTO refresh_run_assets (run_id, asset_id, component, status, rows_written, repairs, rejects,
    gaps, duration_s, error_text, details)
VALUES (%(run_id)s, %(asset_id)s, %(component)s, %(status)s, %(rows_written)s, %(repairs)s,
    %(rejects)s, %(gaps)s, %(duration_s)s, %(error)s, %(details)s)
ON CONFLICT (run_id, asset_id, component) DO UPDATE SET
    status = EXCLUDED.status, rows_written = EXCLUDED.rows_written, repairs = EXCLUDED.repairs,
    rejects = EXCLUDED.rejects, gaps = EXCLUDED.gaps, duration_s = EXCLUDED.duration_s,
    error_text = EXCLUDED.error_text, details = EXCLUDED.details, recorded_at = now()
