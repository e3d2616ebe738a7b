-- 016_ema_fast_path: the daily EMA step reads only the grid days after each series' last_ts
-- (queries/bars_1d_tail): an index range scan instead of a scan of the asset's history.
CREATE INDEX IF NOT EXISTS cmc_price_bars_1d_id_time_close ON cmc_price_bars_1d (id, time_close);
