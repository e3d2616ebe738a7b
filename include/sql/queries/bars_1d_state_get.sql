-- bars_1d_state_get: the 1d watermark row of one asset. Params: id.
SELECT id, last_src_ts, daily_min_seen, daily_max_seen, last_run_ts, last_upserted,
       last_repaired_timehigh, last_repaired_timelow, last_rejected, last_filled_times,
       last_load_ts, rev
FROM cmc_price_bars_1d_state WHERE id = %(id)s
