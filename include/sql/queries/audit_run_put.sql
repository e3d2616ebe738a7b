-- audit_run_put: create or finish one refresh_runs row.
INSERT INTO refresh_runs AS r (run_id, dag_id, as_of, params, status, started_at, finished_at,
    assets_total, assets_ok, assets_failed, assets_skipped, bars_written, emas_written, gaps_flagged,
    repairs, rejects, validation_fail, validation_warn, summary_text)
VALUES (%(run_id)s, %(dag_id)s, %(as_of)s, %(params)s, %(status)s, now(), %(finished_at)s,
    %(assets_total)s, %(assets_ok)s, %(assets_failed)s, %(assets_skipped)s, %(bars_written)s,
    %(emas_written)s, %(gaps_flagged)s, %(repairs)s, %(rejects)s, %(validation_fail)s,
    %(validation_warn)s, %(summary_text)s)
ON CONFLICT (run_id) DO UPDATE SET
    as_of = EXCLUDED.as_of, params = EXCLUDED.params, status = EXCLUDED.status,
    finished_at = EXCLUDED.finished_at, assets_total = EXCLUDED.assets_total,
    assets_ok = EXCLUDED.assets_ok, assets_failed = EXCLUDED.assets_failed,
    assets_skipped = EXCLUDED.assets_skipped, bars_written = EXCLUDED.bars_written,
    emas_written = EXCLUDED.emas_written, gaps_flagged = EXCLUDED.gaps_flagged,
    repairs = EXCLUDED.repairs, rejects = EXCLUDED.rejects, validation_fail = EXCLUDED.validation_fail,
    validation_warn = EXCLUDED.validation_warn, summary_text = EXCLUDED.summary_text
