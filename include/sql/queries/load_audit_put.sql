-- load_audit_put: the accounting of one loaded file. Params: load_id, source_file, lines_read,
-- inserted, updated, unchanged, rejected, refused.
INSERT INTO cmc_load_audit (load_id, source_file, lines_read, inserted, updated, unchanged, rejected, refused)
VALUES (%(load_id)s, %(source_file)s, %(lines_read)s, %(inserted)s, %(updated)s, %(unchanged)s, %(rejected)s,
        %(refused)s)
ON CONFLICT (load_id, source_file) DO UPDATE SET
    lines_read = EXCLUDED.lines_read, inserted = EXCLUDED.inserted, updated = EXCLUDED.updated,
    unchanged = EXCLUDED.unchanged, rejected = EXCLUDED.rejected, refused = EXCLUDED.refused, loaded_at = now()
