-- validation_ohlc_consistency: rows of one asset in a bar table ({table}: the 1d table or a
-- snapshot family) violating 0 < low <= min(open, close) <= max(open, close) <= high < inf
-- or time_open <= time_low, time_high <= time_close. NaN fails (Postgres orders NaN last).
-- One row per tf. Params: id. Identifiers: {table}.
WITH r AS (
    SELECT tf, "timestamp", open, high, low, close, time_open, time_high, time_low, time_close,
           NOT (low > 0 AND high < 'Infinity'::float8
                AND low <= LEAST(open, close) AND GREATEST(open, close) <= high
                AND time_open <= time_low AND time_open <= time_high
                AND time_low <= time_close AND time_high <= time_close) AS bad
    FROM {table}
    WHERE id = %(id)s
)
SELECT tf, count(*) AS n_checked, count(*) FILTER (WHERE bad) AS n_bad,
       (array_agg(jsonb_build_object('tf', tf, 'timestamp', "timestamp", 'open', open::text,
                                     'high', high::text, 'low', low::text, 'close', close::text,
                                     'time_open', time_open, 'time_high', time_high,
                                     'time_low', time_low, 'time_close', time_close)
                  ORDER BY "timestamp") FILTER (WHERE bad))[1:5] AS examples
FROM r
GROUP BY tf
ORDER BY tf
