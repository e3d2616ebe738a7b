-- audit_validation_counts: validation severities of one run. Params: run_id.
SELECT severity, count(*) FROM validation_results WHERE run_id = %(run_id)s GROUP BY severity
