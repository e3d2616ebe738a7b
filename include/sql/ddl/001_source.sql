-- 001_source: raw CoinMarketCap candles and the asset dimension. Idempotent.
CREATE TABLE IF NOT EXISTS dim_assets (
    id          integer PRIMARY KEY,
    symbol      text NOT NULL,
    name        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    first_seen  timestamptz,
    last_seen   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cmc_price_histories7 (
    id           integer NOT NULL,
    name         text,
    timeopen     timestamptz,
    timeclose    timestamptz,
    timehigh     timestamptz,
    timelow      timestamptz,
    "timestamp"  timestamptz NOT NULL,
    open         double precision,
    high         double precision,
    low          double precision,
    close        double precision,
    volume       double precision,
    marketcap    double precision,
    source_file  text,
    load_ts      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp")
);
-- change detection for late revisions beyond the 1d lookback
CREATE INDEX IF NOT EXISTS cmc_price_histories7_load_ts_idx ON cmc_price_histories7 (id, load_ts);

-- Lines of input files the loader could not parse (bad field count, unparsable number or
-- date, duplicate timestamp inside one file): kept here with file, line and reason so
-- nothing is silently dropped.
CREATE TABLE IF NOT EXISTS cmc_load_rejects (
    source_file  text NOT NULL,
    line_no      integer NOT NULL,
    reason       text NOT NULL,
    raw_line     text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_file, line_no)
);
