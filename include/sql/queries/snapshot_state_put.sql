-- snapshot_state_put: advance one (id, tf) state row of a snapshot family ({state} identifier):
-- the watermarks and the series' newest row (what the next append resumes from).
INSERT INTO {state} AS s (id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev,
                          last_volume_comp, last_ts, last_pos_in_bar, last_time_open, last_time_high, last_time_low,
                          last_open, last_high, last_low, last_volume, last_count_days, last_first_missing_day,
                          last_last_missing_day, updated_at)
VALUES (%(id)s, %(tf)s, %(daily_min_seen)s, %(daily_max_seen)s, %(last_bar_seq)s, %(last_time_close)s, %(src_rev)s,
        %(last_volume_comp)s, %(last_ts)s, %(last_pos_in_bar)s, %(last_time_open)s, %(last_time_high)s,
        %(last_time_low)s, %(last_open)s, %(last_high)s, %(last_low)s, %(last_volume)s, %(last_count_days)s,
        %(last_first_missing_day)s, %(last_last_missing_day)s, now())
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
