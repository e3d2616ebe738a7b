-- dim_timeframe_all: every timeframe row (builders select theirs in ta_lab2.timeframes).
SELECT tf, base_unit, tf_qty, tf_days_nominal, alignment_type, calendar_scheme, roll_policy,
       allow_partial_start, allow_partial_end, tf_days_min, tf_days_max, is_canonical, sort_order
FROM dim_timeframe ORDER BY sort_order, tf
