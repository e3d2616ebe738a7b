-- ema_rejects_put: move staged rejects (temp _stage_ema_rejects) into ema_rejects.
INSERT INTO ema_rejects (alignment_source, id, tf, period, ts, ema_value, violation_type, bounds, source_close)
SELECT alignment_source, id, tf, period, ts, ema_value, violation_type, bounds, source_close FROM _stage_ema_rejects
ON CONFLICT (id, alignment_source, tf, period, ts, violation_type) DO UPDATE SET
    ema_value = EXCLUDED.ema_value, bounds = EXCLUDED.bounds, source_close = EXCLUDED.source_close,
    created_at = now()
