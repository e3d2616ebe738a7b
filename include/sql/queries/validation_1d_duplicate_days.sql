-- validation_1d_duplicate_days: UTC days of one asset holding more than one 1d bar
-- (the PK is (id, "timestamp"), so two instants of one day would both fit).
-- Params: id. Identifiers: {bars_1d}.
SELECT (time_open AT TIME ZONE 'UTC')::date AS day, count(*) AS n,
       array_agg("timestamp" ORDER BY "timestamp") AS timestamps
FROM {bars_1d}
WHERE id = %(id)s
GROUP BY 1
HAVING count(*) > 1
ORDER BY 1
