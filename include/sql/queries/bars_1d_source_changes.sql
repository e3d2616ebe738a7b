-- bars_1d_source_changes: what the 1d builder must look at for one asset.
-- New or revised rows = visible rows inside the lookback (timestamp > last_src_ts - lookback)
-- or loaded after the last consumed load_ts (revisions older than the lookback).
-- Params: id, cutoff, last_src_ts, lookback (interval), last_load_ts.
SELECT min("timestamp") FILTER (WHERE "timestamp" > %(last_src_ts)s::timestamptz - %(lookback)s::interval
                                   OR load_ts > %(last_load_ts)s::timestamptz) AS first_changed_ts,
       min("timestamp") AS src_min_ts,
       max("timestamp") AS src_max_ts,
       max(load_ts) AS max_load_ts
FROM cmc_price_histories7
WHERE id = %(id)s AND "timestamp" < %(cutoff)s
