-- ema_state_put_staged: ema_state_put for every row of a staged batch ({stage}), in one statement.
INSERT INTO {state} AS s (id, tf, period, last_ts, last_canonical_ts, last_bar_ema, last_ema,
    canonical_count, src_rev, median3_min, median3_max, updated_at)
SELECT id, tf, period, last_ts, last_canonical_ts, last_bar_ema, last_ema, canonical_count, src_rev,
    median3_min, median3_max, now()
FROM {stage}
ON CONFLICT (id, tf, period) DO UPDATE SET
    last_ts = EXCLUDED.last_ts, last_canonical_ts = EXCLUDED.last_canonical_ts,
    last_bar_ema = EXCLUDED.last_bar_ema, last_ema = EXCLUDED.last_ema,
    canonical_count = EXCLUDED.canonical_count, src_rev = EXCLUDED.src_rev,
    median3_min = EXCLUDED.median3_min, median3_max = EXCLUDED.median3_max, updated_at = now()
