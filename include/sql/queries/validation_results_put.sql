-- validation_results_put: upsert one check result of a run (validation_results).
-- Params: run_id, asset_id, check_name, severity, observed, threshold, message, details (json text).
INSERT INTO validation_results AS v (run_id, asset_id, check_name, severity, observed, threshold, message,
                                     details, checked_at)
VALUES (%(run_id)s, %(asset_id)s, %(check_name)s, %(severity)s, %(observed)s, %(threshold)s, %(message)s,
        %(details)s::jsonb, now())
ON CONFLICT (run_id, asset_id, check_name) DO UPDATE SET
    severity = EXCLUDED.severity, observed = EXCLUDED.observed, threshold = EXCLUDED.threshold,
    message = EXCLUDED.message, details = EXCLUDED.details, checked_at = EXCLUDED.checked_at
