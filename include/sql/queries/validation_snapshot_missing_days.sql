-- validation_snapshot_missing_days: snapshot rows of one asset ({table}) whose missing-day
-- columns disagree with each other, per tf and kind:
--   flag       is_missing_days <> (count_missing_days > 0), or first_missing_day set <> count > 0
--   days_sum   count_days + count_missing_days <> pos_in_bar (bars without a partial start)
--   range      first_missing_day > last_missing_day, or only one of them set
-- Params: id. Identifiers: {table}.
WITH r AS (
    SELECT tf, bar_seq, "timestamp", pos_in_bar, count_days, count_missing_days, is_missing_days,
           first_missing_day, last_missing_day,
           (is_missing_days <> (count_missing_days > 0)
            OR (first_missing_day IS NOT NULL) <> (count_missing_days > 0)) AS bad_flag,
           (NOT is_partial_start AND count_days + count_missing_days <> pos_in_bar) AS bad_sum,
           (first_missing_day > last_missing_day
            OR (first_missing_day IS NULL) <> (last_missing_day IS NULL)) AS bad_range
    FROM {table}
    WHERE id = %(id)s
)
SELECT tf, count(*) AS n_checked,
       count(*) FILTER (WHERE bad_flag OR bad_sum OR bad_range) AS n_bad,
       count(*) FILTER (WHERE bad_flag) AS n_flag,
       count(*) FILTER (WHERE bad_sum) AS n_days_sum,
       count(*) FILTER (WHERE bad_range) AS n_range,
       (array_agg(jsonb_build_object('tf', tf, 'bar_seq', bar_seq, 'timestamp', "timestamp",
                                     'pos_in_bar', pos_in_bar, 'count_days', count_days,
                                     'count_missing_days', count_missing_days,
                                     'is_missing_days', is_missing_days,
                                     'first_missing_day', first_missing_day,
                                     'last_missing_day', last_missing_day)
                  ORDER BY "timestamp") FILTER (WHERE bad_flag OR bad_sum OR bad_range))[1:5] AS examples
FROM r
GROUP BY tf
ORDER BY tf
