-- snapshot_state_get: per-(id, tf) state rows of one snapshot family ({state} identifier), with
-- the newest row an append resumes from (last_*; NULL when unknown).
SELECT id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev, last_volume_comp,
       last_ts, last_pos_in_bar, last_time_open, last_time_high, last_time_low, last_open, last_high, last_low,
       last_volume, last_count_days, last_first_missing_day, last_last_missing_day
FROM {state} WHERE id = %(id)s
