-- 006_ema_table (template): one EMA table and its per-series state, applied once per
-- registry.EMA_VARIANTS entry ({table}, {state} are psycopg.sql.Identifier values).
CREATE TABLE IF NOT EXISTS {table} (
    id           integer NOT NULL,
    tf           text NOT NULL,
    ts           timestamptz NOT NULL,
    period       integer NOT NULL,
    tf_days      integer NOT NULL,
    roll         boolean NOT NULL,
    ema          double precision NOT NULL,
    ema_bar      double precision,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, tf, ts, period)
);

CREATE TABLE IF NOT EXISTS {state} (
    id                 integer NOT NULL,
    tf                 text NOT NULL,
    period             integer NOT NULL,
    last_ts            timestamptz,
    last_canonical_ts  timestamptz,
    last_bar_ema       double precision,
    last_ema           double precision,
    canonical_count    integer NOT NULL DEFAULT 0,
    -- change-feed cursor (cmc_price_bars_1d_changes.rev consumed); path-dependent bookkeeping
    src_rev            bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, tf, period)
);

-- Validation bounds carried by the state (EMAS.md "Validation"): min / max of the trailing
-- median3 of the daily closes from the first grid day through last_ts, so the daily run
-- validates its new rows without re-reading the history. NULL (a state written before these
-- columns existed) sends the series once through the path that reads the grid.
ALTER TABLE {state} ADD COLUMN IF NOT EXISTS median3_min double precision;
ALTER TABLE {state} ADD COLUMN IF NOT EXISTS median3_max double precision;
