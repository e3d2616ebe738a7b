-- snapshot_state_get: per-(id, tf) state rows of one snapshot family ({state} identifier).
SELECT id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev, last_volume_comp
FROM {state} WHERE id = %(id)s
