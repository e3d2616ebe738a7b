-- source_stage_extend: the staged rows' line number and raw text (for duplicate rejects).
ALTER TABLE _stage_source ADD COLUMN IF NOT EXISTS line_no integer, ADD COLUMN IF NOT EXISTS raw_line text
