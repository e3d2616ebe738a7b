-- bars_1d_state_put_staged: advance the 1d watermark rows ({state}) of a staged batch ({stage}) in one
-- statement, in the same transaction as the rows.
INSERT INTO {state} AS s (id, last_src_ts, daily_min_seen, daily_max_seen, last_run_ts,
    last_upserted, last_repaired_timehigh, last_repaired_timelow, last_rejected, last_filled_times,
    last_load_ts, rev)
SELECT id, last_src_ts, daily_min_seen, daily_max_seen, now(), last_upserted, last_repaired_timehigh,
       last_repaired_timelow, last_rejected, last_filled_times, last_load_ts, rev
FROM {stage}
ON CONFLICT (id) DO UPDATE SET
    last_src_ts = EXCLUDED.last_src_ts, daily_min_seen = EXCLUDED.daily_min_seen,
    daily_max_seen = EXCLUDED.daily_max_seen, last_run_ts = EXCLUDED.last_run_ts,
    last_upserted = EXCLUDED.last_upserted, last_repaired_timehigh = EXCLUDED.last_repaired_timehigh,
    last_repaired_timelow = EXCLUDED.last_repaired_timelow, last_rejected = EXCLUDED.last_rejected,
    last_filled_times = EXCLUDED.last_filled_times, last_load_ts = EXCLUDED.last_load_ts, rev = EXCLUDED.rev
