-- ema_resume_point: the stored output rows just before a restart instant, for one series of an
-- EMA table ({table}): the last row (its ema) and the last canonical row (its ema_bar).
-- Params: id, tf, period, before_ts.
SELECT (SELECT ts FROM {table} WHERE id = %(id)s AND tf = %(tf)s AND period = %(period)s
          AND ts < %(before_ts)s ORDER BY ts DESC LIMIT 1) AS last_ts,
       (SELECT ema FROM {table} WHERE id = %(id)s AND tf = %(tf)s AND period = %(period)s
          AND ts < %(before_ts)s ORDER BY ts DESC LIMIT 1) AS last_ema,
       (SELECT ts FROM {table} WHERE id = %(id)s AND tf = %(tf)s AND period = %(period)s
          AND ts < %(before_ts)s AND NOT roll ORDER BY ts DESC LIMIT 1) AS last_canonical_ts,
       (SELECT ema_bar FROM {table} WHERE id = %(id)s AND tf = %(tf)s AND period = %(period)s
          AND ts < %(before_ts)s AND NOT roll ORDER BY ts DESC LIMIT 1) AS last_bar_ema
