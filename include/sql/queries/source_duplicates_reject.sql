-- source_duplicates_reject: a second staged line for the same (id, "timestamp") in one file
-- is removed from the stage and recorded as a reject; the first line is kept. Works across
-- the chunks of a streamed file. Params: source_file. Returns one row per reject.
WITH ranked AS (
    SELECT line_no, first_value(line_no) OVER (PARTITION BY id, "timestamp" ORDER BY line_no) AS first_line
    FROM _stage_source
    WHERE line_no IS NOT NULL
), dups AS (
    DELETE FROM _stage_source s USING ranked r
    WHERE s.line_no = r.line_no AND r.line_no <> r.first_line
    RETURNING s.line_no, s.raw_line, s."timestamp", r.first_line
)
INSERT INTO cmc_load_rejects (source_file, line_no, reason, raw_line)
SELECT %(source_file)s, line_no,
       format('duplicate timestamp %%s+00:00 (first seen on line %%s; kept)',
              to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), first_line),
       raw_line
FROM dups
ON CONFLICT (source_file, line_no) DO UPDATE SET
    reason = EXCLUDED.reason, raw_line = EXCLUDED.raw_line, rejected_at = now()
RETURNING line_no, reason, raw_line
