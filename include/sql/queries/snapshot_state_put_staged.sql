-- snapshot_state_put_staged: advance the (id, tf) state rows of a snapshot family ({state}) from a staged
-- batch ({stage}), in one statement: the watermarks and each series' newest row (what the next append
-- resumes from). Written in the same transaction as the rows.
INSERT INTO {state} AS s (id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev,
                          last_volume_comp, last_ts, last_pos_in_bar, last_time_open, last_time_high, last_time_low,
                          last_open, last_high, last_low, last_volume, last_count_days, last_first_missing_day,
                          last_last_missing_day, updated_at)
SELECT id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev, last_volume_comp, last_ts,
       last_pos_in_bar, last_time_open, last_time_high, last_time_low, last_open, last_high, last_low, last_volume,
       last_count_days, last_first_missing_day, last_last_missing_day, now()
FROM {stage}
ON CONFLICT (id, tf) DO UPDATE SET
    daily_min_seen = EXCLUDED.daily_min_seen, daily_max_seen = EXCLUDED.daily_max_seen,
    last_bar_seq = EXCLUDED.last_bar_seq, last_time_close = EXCLUDED.last_time_close,
    src_rev = EXCLUDED.src_rev, last_volume_comp = EXCLUDED.last_volume_comp, last_ts = EXCLUDED.last_ts,
    last_pos_in_bar = EXCLUDED.last_pos_in_bar, last_time_open = EXCLUDED.last_time_open,
    last_time_high = EXCLUDED.last_time_high, last_time_low = EXCLUDED.last_time_low,
    last_open = EXCLUDED.last_open, last_high = EXCLUDED.last_high, last_low = EXCLUDED.last_low,
    last_volume = EXCLUDED.last_volume, last_count_days = EXCLUDED.last_count_days,
    last_first_missing_day = EXCLUDED.last_first_missing_day,
    last_last_missing_day = EXCLUDED.last_last_missing_day, updated_at = now()
