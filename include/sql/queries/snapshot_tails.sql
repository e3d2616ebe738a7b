-- snapshot_tails: the newest row of each (id, tf) series named (what an append resumes from),
-- with the state's running-volume compensation and bookkeeping to check the row against.
-- Params: ids (int[]), tfs (text[]), pairwise. Identifiers: {table}, {state} (one snapshot family).
SELECT k.id, k.tf, s.last_bar_seq, s.last_time_close, s.last_volume_comp AS volume_comp,
       t.bar_seq, t."timestamp", t.time_close, t.pos_in_bar, t.time_open, t.time_high, t.time_low,
       t.open, t.high, t.low, t.volume, t.count_days, t.first_missing_day, t.last_missing_day
FROM unnest(%(ids)s::integer[], %(tfs)s::text[]) AS k(id, tf)
JOIN {state} AS s ON s.id = k.id AND s.tf = k.tf
CROSS JOIN LATERAL (
    SELECT * FROM {table} AS r WHERE r.id = k.id AND r.tf = k.tf ORDER BY r."timestamp" DESC LIMIT 1
) AS t
