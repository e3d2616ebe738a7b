-- warehouse_overview: one row per active asset WITH DATA (the assets `ids = all` refreshes: a
-- seeded or imported registry row appears once candles for it were loaded) for the Airflow UI's
-- Warehouse page: its last
-- 1d day and source watermark, its 1d coverage (first/last day, days present: gaps are the
-- days between first and last without a bar), its 1d and EMA reject counts, and the status of
-- every component in the LAST run that touched it (a json object component -> status, and
-- component -> error for the ones that did not succeed) and the staleness threshold that run used.
-- No params. Identifiers: {bars_1d}, {state_1d}, {rejects_1d} (registry.BAR_1D tables).
WITH cover AS (
    SELECT id, min(time_open) AS first_open, max(time_open) AS last_open, count(*) AS n_days
    FROM {bars_1d} GROUP BY id
), last_run AS (
    -- the run that last recorded a result for the asset (DAG and CLI runs alike)
    SELECT DISTINCT ON (x.asset_id) x.asset_id, x.run_id, x.at, r.status AS run_status,
           (r.params ->> 'staleness_hours')::double precision AS staleness_hours
    FROM (SELECT asset_id, run_id, max(recorded_at) AS at FROM refresh_run_assets GROUP BY asset_id, run_id) AS x
    LEFT JOIN refresh_runs r ON r.run_id = x.run_id
    ORDER BY x.asset_id, x.at DESC, x.run_id DESC
)
SELECT a.id, a.symbol, a.name,
       (c.last_open AT TIME ZONE 'UTC')::date AS last_day,
       s.last_src_ts,
       COALESCE(c.n_days, 0) AS n_days,
       COALESCE(((c.last_open AT TIME ZONE 'UTC')::date - (c.first_open AT TIME ZONE 'UTC')::date) + 1
                - c.n_days, 0) AS gaps,
       (SELECT count(*) FROM {rejects_1d} j WHERE j.id = a.id) AS rejects_1d,
       (SELECT count(*) FROM ema_rejects e WHERE e.id = a.id) AS rejects_ema,
       lr.run_id, lr.at AS run_recorded_at, lr.run_status, lr.staleness_hours,
       (SELECT jsonb_object_agg(x.component, x.status) FROM refresh_run_assets x
         WHERE x.run_id = lr.run_id AND x.asset_id = a.id) AS components,
       (SELECT jsonb_object_agg(x.component, x.error_text) FROM refresh_run_assets x
         WHERE x.run_id = lr.run_id AND x.asset_id = a.id AND x.error_text IS NOT NULL) AS errors
FROM dim_assets a
LEFT JOIN cover c ON c.id = a.id
LEFT JOIN {state_1d} s ON s.id = a.id
LEFT JOIN last_run lr ON lr.asset_id = a.id
WHERE a.is_active AND a.first_seen IS NOT NULL
ORDER BY a.id
