-- chart_timeframes: the timeframes a bar table holds for one asset (what a chart can show).
-- Params: id. Identifiers: {table}.
SELECT DISTINCT tf FROM {table} WHERE id = %(id)s ORDER BY tf
