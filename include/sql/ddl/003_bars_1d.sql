-- 003_bars_1d: the 1d bar table, its state, its rejects and its change feed (BARS.md §1).
CREATE TABLE IF NOT EXISTS cmc_price_bars_1d (
    id                 integer NOT NULL,
    tf                 text NOT NULL DEFAULT '1D',
    bar_seq            integer NOT NULL,
    "timestamp"        timestamptz NOT NULL,
    time_open          timestamptz NOT NULL,
    time_close         timestamptz NOT NULL,
    time_high          timestamptz NOT NULL,
    time_low           timestamptz NOT NULL,
    open               double precision NOT NULL,
    high               double precision NOT NULL,
    low                double precision NOT NULL,
    close              double precision NOT NULL,
    volume             double precision,
    market_cap         double precision,
    is_partial_start   boolean NOT NULL DEFAULT false,
    is_partial_end     boolean NOT NULL DEFAULT false,
    is_missing_days    boolean NOT NULL,
    count_missing_days integer NOT NULL,
    ingested_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp")
);

CREATE TABLE IF NOT EXISTS cmc_price_bars_1d_state (
    id                      integer PRIMARY KEY,
    last_src_ts             timestamptz,
    daily_min_seen          timestamptz,
    daily_max_seen          timestamptz,
    last_run_ts             timestamptz,
    last_upserted           integer NOT NULL DEFAULT 0,
    last_repaired_timehigh  integer NOT NULL DEFAULT 0,
    last_repaired_timelow   integer NOT NULL DEFAULT 0,
    last_rejected           integer NOT NULL DEFAULT 0,
    -- rows whose intraday high/low time was absent (per-coin CSV) and was filled
    last_filled_times       integer NOT NULL DEFAULT 0,
    -- greatest source load_ts consumed (catches revisions older than the lookback)
    last_load_ts            timestamptz,
    -- change-feed cursor: revision of the last change written (see _changes)
    rev                     bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS cmc_price_bars_1d_rejects (
    id           integer NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    reason       text NOT NULL,
    raw          jsonb NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp", reason)
);

-- Change feed: every 1d run that changes anything appends (id, rev, first changed day).
-- Downstream families keep the last rev they consumed and restart from the first changed
-- day of everything newer, which covers appends, lookback revisions, deletions and
-- rebuilds with one mechanism.
CREATE TABLE IF NOT EXISTS cmc_price_bars_1d_changes (
    id                integer NOT NULL,
    rev               bigint NOT NULL,
    first_changed_ts  timestamptz NOT NULL,
    rows_changed      integer NOT NULL,
    is_rebuild        boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, rev)
);
