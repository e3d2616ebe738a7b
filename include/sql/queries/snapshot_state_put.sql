-- snapshot_state_put: advance one (id, tf) state row of a snapshot family ({state} identifier).
INSERT INTO {state} AS s (id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev,
                          last_volume_comp, updated_at)
VALUES (%(id)s, %(tf)s, %(daily_min_seen)s, %(daily_max_seen)s, %(last_bar_seq)s, %(last_time_close)s, %(src_rev)s,
        %(last_volume_comp)s, now())
ON CONFLICT (id, tf) DO UPDATE SET
    daily_min_seen = EXCLUDED.daily_min_seen, daily_max_seen = EXCLUDED.daily_max_seen,
    last_bar_seq = EXCLUDED.last_bar_seq, last_time_close = EXCLUDED.last_time_close,
    src_rev = EXCLUDED.src_rev, last_volume_comp = EXCLUDED.last_volume_comp, updated_at = now()
