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
