-- 007_audit: run audit (OPERATIONS.md §6) and validation results (§5).
CREATE TABLE IF NOT EXISTS refresh_runs (
    run_id          text PRIMARY KEY,
    dag_id          text,
    as_of           timestamptz,
    params          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'running',
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    assets_total    integer,
    assets_ok       integer,
    assets_failed   integer,
    assets_skipped  integer,
    bars_written    bigint,
    emas_written    bigint,
    gaps_flagged    bigint,
    repairs         bigint,
    rejects         bigint,
    validation_fail integer,
    validation_warn integer,
    summary_text    text
);

CREATE TABLE IF NOT EXISTS refresh_run_assets (
    run_id        text NOT NULL,
    asset_id      integer NOT NULL,
    component     text NOT NULL,
    status        text NOT NULL CHECK (status IN ('ok', 'failed', 'skipped', 'not_run', 'dry_run')),
    rows_written  bigint NOT NULL DEFAULT 0,
    repairs       integer NOT NULL DEFAULT 0,
    rejects       integer NOT NULL DEFAULT 0,
    gaps          integer NOT NULL DEFAULT 0,
    duration_s    double precision,
    error_text    text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, asset_id, component)
);

CREATE TABLE IF NOT EXISTS validation_results (
    run_id      text NOT NULL,
    asset_id    integer NOT NULL,  -- 0 for cross-asset checks
    check_name  text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('PASS', 'WARN', 'FAIL')),
    observed    double precision,
    threshold   double precision,
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, asset_id, check_name)
);
