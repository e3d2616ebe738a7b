-- chart_bars_1d: the last N daily bars of one asset, oldest first, for a chart.
-- Params: id, n. Identifiers: {table} (the 1d bar table).
SELECT * FROM (
    SELECT "timestamp", time_open, open, high, low, close, is_missing_days
    FROM {table} WHERE id = %(id)s
    ORDER BY "timestamp" DESC LIMIT %(n)s
) AS b ORDER BY "timestamp"
