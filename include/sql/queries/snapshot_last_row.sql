-- snapshot_last_row: the newest row of one (id, tf) series of a snapshot table ({table}).
SELECT bar_seq, time_close FROM {table} WHERE id = %(id)s AND tf = %(tf)s ORDER BY "timestamp" DESC LIMIT 1
