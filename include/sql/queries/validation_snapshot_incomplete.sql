-- validation_snapshot_incomplete: bars of one asset ({table}) whose window has passed without
-- completing: the bar's last snapshot still has is_partial_end = true but a later bar_seq of
-- the same tf exists (the bar's scheduled last day is missing from the 1d data).
-- One row per tf. Params: id. Identifiers: {table}.
WITH last AS (
    SELECT DISTINCT ON (tf, bar_seq) tf, bar_seq, "timestamp", is_partial_end, count_days_remaining
    FROM {table}
    WHERE id = %(id)s
    ORDER BY tf, bar_seq, "timestamp" DESC
), x AS (
    SELECT *, max(bar_seq) OVER (PARTITION BY tf) AS max_seq,
           is_partial_end AND bar_seq < max(bar_seq) OVER (PARTITION BY tf) AS incomplete
    FROM last
)
SELECT tf, count(*) AS n_checked, count(*) FILTER (WHERE incomplete) AS n_bad,
       (array_agg(jsonb_build_object('tf', tf, 'bar_seq', bar_seq, 'last_snapshot', "timestamp",
                                     'scheduled_end',
                                     ((("timestamp" - interval '1 microsecond') AT TIME ZONE 'UTC')::date
                                      + count_days_remaining))
                  ORDER BY bar_seq) FILTER (WHERE incomplete))[1:20] AS examples
FROM x
GROUP BY tf
ORDER BY tf
