-- validation_1d_missing_days: 1d rows whose count_missing_days is not the number of calendar
-- days between the row's UTC day and the previous row's (0 on the first row), or whose
-- is_missing_days disagrees with count_missing_days > 0.
-- Params: id. Identifiers: {bars_1d}.
WITH d AS (
    SELECT "timestamp", (time_open AT TIME ZONE 'UTC')::date AS day, count_missing_days, is_missing_days
    FROM {bars_1d}
    WHERE id = %(id)s
), g AS (
    SELECT *, COALESCE(day - lag(day) OVER (ORDER BY "timestamp") - 1, 0) AS actual FROM d
)
SELECT count(*) AS n_checked,
       count(*) FILTER (WHERE count_missing_days <> actual OR is_missing_days <> (count_missing_days > 0)) AS n_bad,
       (array_agg(jsonb_build_object('day', day, 'count_missing_days', count_missing_days,
                                     'is_missing_days', is_missing_days, 'actual_gap', actual)
                  ORDER BY "timestamp")
            FILTER (WHERE count_missing_days <> actual OR is_missing_days <> (count_missing_days > 0)))[1:10]
           AS examples
FROM g
