-- validation_snapshot_bar_seq: bar_seq continuity per tf of one asset in a snapshot table
-- ({table}). A jump from bar a to bar b > a + 1 is explained only by a 1d gap that swallows
-- the skipped bars whole: no 1d row ({bars_1d}) strictly between a's last and b's first
-- snapshot, and at least (b - a - 1) * tf_days_min missing calendar days in between.
-- One row per tf. Params: id. Identifiers: {table}, {bars_1d}.
WITH bars AS (
    SELECT tf, bar_seq, min("timestamp") AS first_ts, max("timestamp") AS last_ts
    FROM {table}
    WHERE id = %(id)s
    GROUP BY tf, bar_seq
), steps AS (
    SELECT tf, bar_seq, first_ts, lag(bar_seq) OVER w AS prev_seq, lag(last_ts) OVER w AS prev_last_ts
    FROM bars
    WINDOW w AS (PARTITION BY tf ORDER BY bar_seq)
), jumps AS (
    SELECT s.tf, s.prev_seq, s.bar_seq, s.prev_last_ts, s.first_ts,
           ((s.first_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date
             - ((s.prev_last_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date - 1 AS gap_days,
           (SELECT count(*) FROM {bars_1d} d
            WHERE d.id = %(id)s AND d."timestamp" > s.prev_last_ts AND d."timestamp" < s.first_ts) AS days_between,
           t.tf_days_min
    FROM steps s
    LEFT JOIN dim_timeframe t USING (tf)
    WHERE s.bar_seq <> s.prev_seq + 1
), judged AS (
    SELECT *, (days_between > 0
               OR COALESCE(gap_days < (bar_seq - prev_seq - 1) * tf_days_min, false)) AS bad
    FROM jumps
)
SELECT b.tf, b.n_bars, COALESCE(j.n_jumps, 0) AS n_jumps, COALESCE(j.n_bad, 0) AS n_bad,
       j.examples, j.explained
FROM (SELECT tf, count(*) AS n_bars FROM bars GROUP BY tf) b
LEFT JOIN (
    SELECT tf, count(*) AS n_jumps, count(*) FILTER (WHERE bad) AS n_bad,
           (array_agg(jsonb_build_object('tf', tf, 'from_seq', prev_seq, 'to_seq', bar_seq,
                                         'after', prev_last_ts, 'before', first_ts, 'gap_days', gap_days,
                                         'days_between', days_between)
                      ORDER BY bar_seq) FILTER (WHERE bad))[1:5] AS examples,
           (array_agg(jsonb_build_object('tf', tf, 'from_seq', prev_seq, 'to_seq', bar_seq,
                                         'gap_days', gap_days)
                      ORDER BY bar_seq) FILTER (WHERE NOT bad))[1:5] AS explained
    FROM judged
    GROUP BY tf
) j USING (tf)
ORDER BY b.tf
