-- snapshot_state_put_staged: snapshot_state_put for every row of a staged batch ({stage}), in one statement.
INSERT INTO {state} AS s (id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev,
                          last_volume_comp, updated_at)
SELECT id, tf, daily_min_seen, daily_max_seen, last_bar_seq, last_time_close, src_rev, last_volume_comp, now()
FROM {stage}
ON CONFLICT (id, tf) DO UPDATE SET
    daily_min_seen = EXCLUDED.daily_min_seen, daily_max_seen = EXCLUDED.daily_max_seen,
    last_bar_seq = EXCLUDED.last_bar_seq, last_time_close = EXCLUDED.last_time_close,
    src_rev = EXCLUDED.src_rev, last_volume_comp = EXCLUDED.last_volume_comp, updated_at = now()
