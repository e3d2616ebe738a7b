-- bars_1d_state_put: advance the 1d watermark of one asset (same transaction as the rows).
INSERT INTO cmc_price_bars_1d_state AS s (id, last_src_ts, daily_min_seen, daily_max_seen, last_run_ts,
    last_upserted, last_repaired_timehigh, last_repaired_timelow, last_rejected, last_filled_times,
    last_load_ts, rev)
VALUES (%(id)s, %(last_src_ts)s, %(daily_min_seen)s, %(daily_max_seen)s, now(), %(last_upserted)s,
    %(last_repaired_timehigh)s, %(last_repaired_timelow)s, %(last_rejected)s, %(last_filled_times)s,
    %(last_load_ts)s, %(rev)s)
ON CONFLICT (id) DO UPDATE SET
    last_src_ts = EXCLUDED.last_src_ts, daily_min_seen = EXCLUDED.daily_min_seen,
    daily_max_seen = EXCLUDED.daily_max_seen, last_run_ts = EXCLUDED.last_run_ts,
    last_upserted = EXCLUDED.last_upserted, last_repaired_timehigh = EXCLUDED.last_repaired_timehigh,
    last_repaired_timelow = EXCLUDED.last_repaired_timelow, last_rejected = EXCLUDED.last_rejected,
    last_filled_times = EXCLUDED.last_filled_times, last_load_ts = EXCLUDED.last_load_ts, rev = EXCLUDED.rev
