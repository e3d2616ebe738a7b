-- source_stage_refuse: a refused file (its asset unknown once rows were staged) loads nothing:
-- every staged row becomes a reject with the refusal as its reason. Params: source_file, reason.
INSERT INTO cmc_load_rejects (source_file, line_no, reason, raw_line)
SELECT %(source_file)s, line_no, %(reason)s, coalesce(raw_line, '')
FROM _stage_source
ON CONFLICT (source_file, line_no) DO UPDATE SET
    reason = EXCLUDED.reason, raw_line = EXCLUDED.raw_line, rejected_at = now()
