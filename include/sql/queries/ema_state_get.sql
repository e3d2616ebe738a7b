-- ema_state_get: per-(id, tf, period) state rows of one EMA table ({state} identifier). Params: id.
SELECT id, tf, period, last_ts, last_canonical_ts, last_bar_ema, last_ema, canonical_count, src_rev,
       median3_min, median3_max
FROM {state} WHERE id = %(id)s
