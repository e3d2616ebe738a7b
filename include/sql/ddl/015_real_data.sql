-- 015_real_data: what real CoinMarketCap data needs (issue 11). Idempotent.
-- * cmc_price_histories7.circulating_supply: today's export carries it (nullable: the per-coin
--   CSV and older exports do not). The 1d table has no place for it (BARS.md §1), so it stays here.
-- * dim_assets.slug: CoinMarketCap's slug ("shiba-inu"), matched like the name when a file
--   name says which coin an export is.
-- * source_files: one row per distinct file content the ingest step has loaded (sha256), so a
--   re-dropped or renamed identical file is a no-op and a changed file is reloaded.
-- The built-in seed of well-known CoinMarketCap ids (ta_lab2.assets.SEED) is applied right
-- after the numbered files by ta_lab2.store.schema (queries/assets_seed.sql): seeded rows have
-- no data (first_seen NULL), so `ids = all` ("active assets with data") skips them.
-- The columns are added only when missing: ALTER TABLE takes an ACCESS EXCLUSIVE lock even when
-- IF NOT EXISTS makes it a no-op, and every command applies the schema first, so a refresh
-- starting while a load holds the source table would deadlock with it
-- (tests/reliability/test_concurrency.py::test_a_refresh_racing_a_load_of_revisions_converges).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'cmc_price_histories7'::regclass
                   AND attname = 'circulating_supply' AND NOT attisdropped) THEN
        ALTER TABLE cmc_price_histories7 ADD COLUMN circulating_supply double precision;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'dim_assets'::regclass
                   AND attname = 'slug' AND NOT attisdropped) THEN
        ALTER TABLE dim_assets ADD COLUMN slug text;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS source_files (
    sha256        text PRIMARY KEY,
    location      text NOT NULL,          -- where it was last seen (inbox URI or path)
    file_name     text NOT NULL,
    size_bytes    bigint NOT NULL,
    asset_id      integer,
    rows_inserted integer NOT NULL DEFAULT 0,
    rows_updated  integer NOT NULL DEFAULT 0,
    rows_rejected integer NOT NULL DEFAULT 0,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS source_files_location_idx ON source_files (location, loaded_at);
