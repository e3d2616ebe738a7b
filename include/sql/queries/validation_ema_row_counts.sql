-- validation_ema_row_counts: per (tf, period) series of one asset in a bar-space EMA table
-- ({table}): its seed (first row's ts), its canonical rows (roll = false), and the number of
-- completed bars of its bar family ({bars}: is_partial_end = false) closing at or after the
-- seed. 1D series count the 1d bars ({bars_1d}), every one of which is complete. Bars are
-- matched on time_close (the EMA row's ts is the bar's close instant).
-- Params: id. Identifiers: {table}, {bars}, {bars_1d}.
WITH series AS (
    SELECT tf, period, min(ts) AS seed_ts, count(*) AS n_rows, count(*) FILTER (WHERE NOT roll) AS n_canonical
    FROM {table}
    WHERE id = %(id)s
    GROUP BY tf, period
), closes AS (
    SELECT tf, time_close FROM {bars}
    WHERE id = %(id)s AND NOT is_partial_end AND tf IN (SELECT tf FROM series)
    UNION ALL
    SELECT tf, time_close FROM {bars_1d}
    WHERE id = %(id)s AND tf IN (SELECT tf FROM series)
)
SELECT s.tf, s.period, s.seed_ts, s.n_rows, s.n_canonical, count(c.time_close) AS n_bars
FROM series s
LEFT JOIN closes c ON c.tf = s.tf AND c.time_close >= s.seed_ts
GROUP BY s.tf, s.period, s.seed_ts, s.n_rows, s.n_canonical
ORDER BY s.tf, s.period
