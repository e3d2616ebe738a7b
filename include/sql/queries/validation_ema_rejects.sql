-- validation_ema_rejects: the ema_rejects rows of one asset: total, how many have a severe
-- violation type (bounds, NaN, inf, negative; ema or ema_bar), counts per type and the first
-- few severe rows.
-- Params: id.
WITH r AS (
    SELECT alignment_source, tf, period, ts, violation_type, ema_value,
           violation_type ~* '(bound|nan|inf|negative)' AS severe
    FROM ema_rejects
    WHERE id = %(id)s
)
SELECT count(*) AS n_rows, count(*) FILTER (WHERE severe) AS n_bad,
       (SELECT jsonb_object_agg(violation_type, n)
        FROM (SELECT violation_type, count(*) AS n FROM r GROUP BY violation_type) t) AS by_type,
       (array_agg(jsonb_build_object('alignment_source', alignment_source, 'tf', tf, 'period', period, 'ts', ts, 'violation_type', violation_type,
                                     'ema_value', ema_value::text)
                  ORDER BY alignment_source, tf, period, ts, violation_type) FILTER (WHERE severe))[1:10] AS examples
FROM r
