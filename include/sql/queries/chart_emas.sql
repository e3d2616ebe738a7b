-- chart_emas: the EMA values at bar closes (roll = false) of one (asset, timeframe) for the
-- given periods within [start, end], for a chart. Params: id, tf, periods, start, end.
-- Identifiers: {table} (an EMA table).
SELECT period, ts, ema FROM {table}
WHERE id = %(id)s AND tf = %(tf)s AND period = ANY(%(periods)s) AND NOT roll AND ts >= %(start)s AND ts <= %(end)s
ORDER BY period, ts
