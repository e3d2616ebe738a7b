-- validation_snapshot_ohlcv: every completed bar (is_partial_end = false) of one asset in a
-- snapshot table ({table}) recomputed from the 1d rows ({bars_1d}) of its window, per tf.
-- The window is the UTC days [day(ts) - (pos_in_bar - 1), day(ts)] (ts = the row's
-- "timestamp", the close instant of the bar's last day); its 1d rows are those with
-- "timestamp" in (window start 00:00, ts]. Recomputed: time_open = first day's time_open,
-- open = first day's open, close = last day's close, high = max, low = min,
-- volume = sum (NULL when all NULL), count_days = number of rows. Prices and times must be
-- equal exactly; volume within a relative tolerance (summation order may differ).
-- Params: id, vol_rtol. Identifiers: {table}, {bars_1d}.
WITH bars AS (
    SELECT s.tf, s.bar_seq, s."timestamp", s.time_open, s.open, s.high, s.low, s.close, s.volume,
           s.count_days, a.*
    FROM {table} s
    CROSS JOIN LATERAL (
        SELECT count(*) AS n_1d,
               (array_agg(d.time_open ORDER BY d."timestamp"))[1] AS time_open_1d,
               (array_agg(d.open ORDER BY d."timestamp"))[1] AS open_1d,
               (array_agg(d.close ORDER BY d."timestamp" DESC))[1] AS close_1d,
               max(d.high) AS high_1d, min(d.low) AS low_1d, sum(d.volume) AS volume_1d
        FROM {bars_1d} d
        WHERE d.id = s.id
          AND d."timestamp" <= s."timestamp"
          AND d."timestamp" > ((date_trunc('day', (s."timestamp" - interval '1 microsecond') AT TIME ZONE 'UTC')
                                - (s.pos_in_bar - 1) * interval '1 day') AT TIME ZONE 'UTC')
    ) a
    WHERE s.id = %(id)s AND NOT s.is_partial_end
), cmp AS (
    SELECT *, array_remove(ARRAY[
               CASE WHEN time_open IS DISTINCT FROM time_open_1d THEN 'time_open' END,
               CASE WHEN open IS DISTINCT FROM open_1d THEN 'open' END,
               CASE WHEN high IS DISTINCT FROM high_1d THEN 'high' END,
               CASE WHEN low IS DISTINCT FROM low_1d THEN 'low' END,
               CASE WHEN close IS DISTINCT FROM close_1d THEN 'close' END,
               CASE WHEN count_days IS DISTINCT FROM n_1d THEN 'count_days' END,
               CASE WHEN CASE WHEN volume IS NULL OR volume_1d IS NULL THEN volume IS DISTINCT FROM volume_1d
                              ELSE abs(volume - volume_1d) > %(vol_rtol)s * GREATEST(abs(volume), abs(volume_1d))
                         END THEN 'volume' END], NULL) AS mismatched
    FROM bars
)
SELECT tf, count(*) AS n_checked, count(*) FILTER (WHERE cardinality(mismatched) > 0) AS n_bad,
       (array_agg(jsonb_build_object(
            'tf', tf, 'bar_seq', bar_seq, 'timestamp', "timestamp", 'columns', mismatched,
            'stored', jsonb_build_object('open', open::text, 'high', high::text, 'low', low::text,
                                         'close', close::text, 'volume', volume::text, 'count_days', count_days,
                                         'time_open', time_open),
            'from_1d', jsonb_build_object('open', open_1d::text, 'high', high_1d::text, 'low', low_1d::text,
                                          'close', close_1d::text, 'volume', volume_1d::text, 'count_days', n_1d,
                                          'time_open', time_open_1d))
                  ORDER BY "timestamp") FILTER (WHERE cardinality(mismatched) > 0))[1:5] AS examples
FROM cmp
GROUP BY tf
ORDER BY tf
