-- snapshot_last_row: the newest row of one (id, tf) series of a snapshot table ({table}), as the
-- state's last_* columns (primary-key order: bar_seq grows with time within a series).
SELECT bar_seq AS last_bar_seq, time_close AS last_time_close, "timestamp" AS last_ts, pos_in_bar AS last_pos_in_bar,
       time_open AS last_time_open, time_high AS last_time_high, time_low AS last_time_low, open AS last_open,
       high AS last_high, low AS last_low, volume AS last_volume, count_days AS last_count_days,
       first_missing_day AS last_first_missing_day, last_missing_day AS last_last_missing_day
FROM {table} WHERE id = %(id)s AND tf = %(tf)s ORDER BY bar_seq DESC, "timestamp" DESC LIMIT 1
