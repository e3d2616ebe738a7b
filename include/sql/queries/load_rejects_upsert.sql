-- load_rejects_upsert: record one unparsable input line. Params: source_file, line_no, reason, raw_line.
INSERT INTO cmc_load_rejects (source_file, line_no, reason, raw_line)
VALUES (%(source_file)s, %(line_no)s, %(reason)s, %(raw_line)s)
ON CONFLICT (source_file, line_no) DO UPDATE SET
    reason = EXCLUDED.reason, raw_line = EXCLUDED.raw_line, rejected_at = now()
