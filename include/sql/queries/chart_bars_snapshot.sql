-- chart_bars_snapshot: the last N bars of one (asset, timeframe) of a snapshot family, oldest
-- first: each bar is its latest snapshot row (the complete bar, or the current partial one).
-- Params: id, tf, n. Identifiers: {table} (a snapshot bar table).
SELECT * FROM (
    SELECT DISTINCT ON (bar_seq) "timestamp", time_open, open, high, low, close, is_missing_days
    FROM {table} WHERE id = %(id)s AND tf = %(tf)s
    ORDER BY bar_seq DESC, "timestamp" DESC LIMIT %(n)s
) AS b ORDER BY "timestamp"
