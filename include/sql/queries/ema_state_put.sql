-- ema_state_put: advance one (id, tf, period) EMA state row ({state} identifier).
INSERT INTO {state} AS s (id, tf, period, last_ts, last_canonical_ts, last_bar_ema, last_ema,
    canonical_count, src_rev, median3_min, median3_max, updated_at)
VALUES (%(id)s, %(tf)s, %(period)s, %(last_ts)s, %(last_canonical_ts)s, %(last_bar_ema)s, %(last_ema)s,
    %(canonical_count)s, %(src_rev)s, %(median3_min)s, %(median3_max)s, now())
ON CONFLICT (id, tf, period) DO UPDATE SET
    last_ts = EXCLUDED.last_ts, last_canonical_ts = EXCLUDED.last_canonical_ts,
    last_bar_ema = EXCLUDED.last_bar_ema, last_ema = EXCLUDED.last_ema,
    canonical_count = EXCLUDED.canonical_count, src_rev = EXCLUDED.src_rev,
    median3_min = EXCLUDED.median3_min, median3_max = EXCLUDED.median3_max, updated_at = now()
