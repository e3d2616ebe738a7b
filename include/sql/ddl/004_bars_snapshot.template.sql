-- 004_bars_snapshot (template): one snapshot bar table and its state per snapshot family.
-- Applied once per registry.SNAPSHOT_FAMILIES entry; {table} and {state} are identifiers
-- substituted with psycopg.sql.Identifier (never string formatting of values).
CREATE TABLE IF NOT EXISTS {table} (
    id                   integer NOT NULL,
    tf                   text NOT NULL,
    tf_days              integer NOT NULL,
    bar_seq              integer NOT NULL,
    "timestamp"          timestamptz NOT NULL,
    time_open            timestamptz NOT NULL,
    time_close           timestamptz NOT NULL,
    time_high            timestamptz NOT NULL,
    time_low             timestamptz NOT NULL,
    open                 double precision NOT NULL,
    high                 double precision NOT NULL,
    low                  double precision NOT NULL,
    close                double precision NOT NULL,
    volume               double precision,
    market_cap           double precision,
    pos_in_bar           integer NOT NULL,
    count_days_remaining integer NOT NULL,
    is_partial_start     boolean NOT NULL,
    is_partial_end       boolean NOT NULL,
    count_days           integer NOT NULL,
    count_missing_days   integer NOT NULL,
    is_missing_days      boolean NOT NULL,
    first_missing_day    date,
    last_missing_day     date,
    ingested_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, tf, bar_seq, "timestamp")
);
-- No second index on (id, tf, "timestamp") (D-engine-12): within a series bar_seq grows with time,
-- so the primary key already orders a series by time and bounds every (id, tf) read; the extra
-- index doubled the leaf pages a daily run dirties (one new row per series). Dropped where an
-- earlier version created it (IF EXISTS: no lock when it is already gone).
DROP INDEX IF EXISTS {ts_index};

CREATE TABLE IF NOT EXISTS {state} (
    id              integer NOT NULL,
    tf              text NOT NULL,
    daily_min_seen  timestamptz,
    daily_max_seen  timestamptz,
    last_bar_seq    integer,
    last_time_close timestamptz,
    -- change-feed cursor (cmc_price_bars_1d_changes.rev consumed); path-dependent bookkeeping
    src_rev         bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- the running volume of the newest row is a compensated (Kahan) sum: its compensation term,
    -- which an append of new days resumes from (NULL: unknown, the next run rebuilds the open bar)
    last_volume_comp double precision,
    -- the rest of the newest row that an append resumes from (D-engine-9: the daily run reads no
    -- snapshot row); NULL (state rows written before these columns): the next run takes 'window'
    last_ts               timestamptz,
    last_pos_in_bar       integer,
    last_time_open        timestamptz,
    last_time_high        timestamptz,
    last_time_low         timestamptz,
    last_open             double precision,
    last_high             double precision,
    last_low              double precision,
    last_volume           double precision,
    last_count_days       integer,
    last_first_missing_day date,
    last_last_missing_day  date,
    PRIMARY KEY (id, tf)
);
-- Added to state tables created before them, only when missing (ALTER TABLE takes an ACCESS
-- EXCLUSIVE lock even as a no-op; see 015_real_data.sql).
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN SELECT * FROM (VALUES
            ('last_volume_comp', 'double precision'), ('last_ts', 'timestamptz'), ('last_pos_in_bar', 'integer'),
            ('last_time_open', 'timestamptz'), ('last_time_high', 'timestamptz'), ('last_time_low', 'timestamptz'),
            ('last_open', 'double precision'), ('last_high', 'double precision'), ('last_low', 'double precision'),
            ('last_volume', 'double precision'), ('last_count_days', 'integer'),
            ('last_first_missing_day', 'date'), ('last_last_missing_day', 'date')) AS c(name, type)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{state}'::regclass
                       AND attname = col.name AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE {state} ADD COLUMN %I %s', col.name, col.type);
        END IF;
    END LOOP;
END
$$;
