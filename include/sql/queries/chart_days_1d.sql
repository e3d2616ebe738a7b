-- chart_days_1d: the UTC days with a 1d bar for one asset in [start, end] (the days absent
-- from this list are the missing days a chart marks). Params: id, start, end.
-- Identifiers: {table} (the 1d bar table).
SELECT (time_open AT TIME ZONE 'UTC')::date AS day FROM {table}
WHERE id = %(id)s AND time_open >= %(start)s AND time_open <= %(end)s
ORDER BY day
