-- bars_1d_source_changes: what the 1d builder must look at, for every asset of a batch (one row
-- per asset; NULLs when it has no source row visible at its cutoff).
-- New or revised rows = visible rows inside the lookback (timestamp > last_src_ts - lookback)
-- or loaded after the last consumed load_ts (revisions older than the lookback).
-- Params: ids, cutoffs, last_src_ts, last_load_ts (arrays aligned by position), lookback (interval).
SELECT k.id,
       min(s."timestamp") FILTER (WHERE s."timestamp" > k.last_src_ts - %(lookback)s::interval
                                     OR s.load_ts > k.last_load_ts) AS first_changed_ts,
       min(s."timestamp") AS src_min_ts,
       max(s."timestamp") AS src_max_ts,
       max(s.load_ts) AS max_load_ts
FROM unnest(%(ids)s::integer[], %(cutoffs)s::timestamptz[], %(last_src_ts)s::timestamptz[],
            %(last_load_ts)s::timestamptz[]) AS k(id, cutoff, last_src_ts, last_load_ts)
LEFT JOIN cmc_price_histories7 s ON s.id = k.id AND s."timestamp" < k.cutoff
GROUP BY k.id
