-- validation_1d_gaps: every calendar day missing between an asset's first and last 1d bar,
-- classified by what the source (cmc_price_histories7) holds for that UTC day:
--   source_gap   no source row at all (a gap of the source: fine, listed)
--   rejected     source rows exist but every one is in the 1d rejects table (fine, listed)
--   pending      an accepted-looking source row loaded after the 1d state's last_load_ts
--                (not consumed yet: the next refresh picks it up)
--   unexplained  the source has a usable, consumed row and the 1d table lacks the day
-- A source row's day is the UTC day of timeopen, else of the instant just before "timestamp".
-- Params: id. Identifiers: {bars_1d}, {rejects}, {state}.
WITH d AS (
    SELECT (time_open AT TIME ZONE 'UTC')::date AS day FROM {bars_1d} WHERE id = %(id)s
), missing AS (
    SELECT g::date AS day
    FROM (SELECT min(day) AS lo, max(day) AS hi FROM d) AS b,
         generate_series(b.lo, b.hi, interval '1 day') AS g
    EXCEPT
    SELECT day FROM d
), src AS (
    SELECT (COALESCE(s.timeopen, s."timestamp" - interval '1 microsecond') AT TIME ZONE 'UTC')::date AS day,
           EXISTS (SELECT 1 FROM {rejects} r WHERE r.id = s.id AND r."timestamp" = s."timestamp") AS rejected,
           COALESCE(s.load_ts > (SELECT st.last_load_ts FROM {state} st WHERE st.id = %(id)s), false) AS pending
    FROM cmc_price_histories7 s
    WHERE s.id = %(id)s
), src_day AS (
    SELECT day, count(*) AS n, count(*) FILTER (WHERE NOT rejected) AS n_ok,
           count(*) FILTER (WHERE NOT rejected AND pending) AS n_pending
    FROM src
    GROUP BY day
)
SELECT m.day,
       CASE WHEN s.n IS NULL THEN 'source_gap'
            WHEN s.n_ok = 0 THEN 'rejected'
            WHEN s.n_ok = s.n_pending THEN 'pending'
            ELSE 'unexplained' END AS kind
FROM missing m
LEFT JOIN src_day s USING (day)
ORDER BY m.day
