-- 005_emas: EMA periods as data, EMA rejects and the per-id source watermark (EMAS.md).
CREATE TABLE IF NOT EXISTS dim_period (
    period      integer PRIMARY KEY CHECK (period > 0),
    is_default  boolean NOT NULL DEFAULT false
);
INSERT INTO dim_period (period, is_default) VALUES
    (6, false), (9, false), (10, true), (12, false), (14, true), (17, false), (20, true),
    (21, true), (26, false), (30, true), (50, true), (52, false), (77, false), (100, true),
    (200, true), (252, true), (365, true)
ON CONFLICT (period) DO NOTHING;

-- alignment_source (the EMA table, as in cmc_ema_multi_tf_u) is part of the key: EMAS.md's
-- key (id, tf, period, ts, violation_type) collides between tables sharing a tf name
-- (multi_tf and v2 both have 7D; cal_us and cal_iso both have 1M_CAL). See docs/decisions.
CREATE TABLE IF NOT EXISTS ema_rejects (
    alignment_source text NOT NULL,
    id              integer NOT NULL,
    tf              text NOT NULL,
    period          integer NOT NULL,
    ts              timestamptz NOT NULL,
    ema_value       double precision,
    violation_type  text NOT NULL,
    bounds          jsonb NOT NULL,
    source_close    double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, alignment_source, tf, period, ts, violation_type)
);

-- Source watermark (greatest 1d day) each EMA refresher last consumed, per asset.
CREATE TABLE IF NOT EXISTS cmc_ema_refresh_state (
    id                       integer PRIMARY KEY,
    last_load_ts_daily       timestamptz,
    last_load_ts_multi       timestamptz,
    last_load_ts_cal         timestamptz,
    last_load_ts_cal_anchor  timestamptz,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
