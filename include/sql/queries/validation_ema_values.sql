-- validation_ema_values: rows of one asset in an EMA table ({table}) whose ema (or non-NULL
-- ema_bar) is NaN, +-inf or negative. Values are reported as text (JSON has no NaN).
-- Params: id. Identifiers: {table}.
WITH r AS (
    SELECT tf, period, ts, ema, ema_bar,
           (ema = 'NaN'::float8 OR ema IN ('Infinity'::float8, '-Infinity'::float8) OR ema < 0
            OR ema_bar = 'NaN'::float8 OR ema_bar IN ('Infinity'::float8, '-Infinity'::float8)
            OR ema_bar < 0) AS bad
    FROM {table}
    WHERE id = %(id)s
)
SELECT count(*) AS n_checked, count(*) FILTER (WHERE bad) AS n_bad,
       (array_agg(jsonb_build_object('tf', tf, 'period', period, 'ts', ts, 'ema', ema::text,
                                     'ema_bar', ema_bar::text)
                  ORDER BY tf, period, ts) FILTER (WHERE bad))[1:10] AS examples
FROM r
