-- bars_1d_prev: the last stored 1d row strictly before a timestamp. Params: id, before_ts.
SELECT bar_seq, time_open FROM cmc_price_bars_1d
WHERE id = %(id)s AND "timestamp" < %(before_ts)s
ORDER BY "timestamp" DESC LIMIT 1
