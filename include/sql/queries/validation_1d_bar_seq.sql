-- validation_1d_bar_seq: 1d rows whose bar_seq is not their dense rank 1..n in time order.
-- Params: id. Identifiers: {bars_1d}.
WITH d AS (
    SELECT "timestamp", bar_seq, row_number() OVER (ORDER BY "timestamp") AS expected
    FROM {bars_1d}
    WHERE id = %(id)s
)
SELECT count(*) AS n_checked,
       count(*) FILTER (WHERE bar_seq <> expected) AS n_bad,
       (array_agg(jsonb_build_object('timestamp', "timestamp", 'bar_seq', bar_seq, 'expected', expected)
                  ORDER BY "timestamp") FILTER (WHERE bar_seq <> expected))[1:10] AS examples
FROM d
