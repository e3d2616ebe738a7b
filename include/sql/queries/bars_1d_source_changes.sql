-- bars_1d_source_changes: what the 1d builder must look at, for every asset of a batch (one row
-- per asset; NULLs when it has no source row visible at its cutoff).
-- New or revised rows = visible rows inside the lookback (timestamp > last_src_ts - lookback)
-- or loaded after the last consumed load_ts (revisions older than the lookback).
-- Each value is an index probe per asset (primary key (id, timestamp) or (id, load_ts)), not an
-- aggregate over the asset's whole history: the min over (lookback OR late load) is the least
-- of the two mins (LEAST ignores NULLs). The late-load min reads the rows loaded since the last
-- run through (id, load_ts) (OFFSET 0: as a plain min() the planner walked the primary key over
-- the asset's whole history, filtering on load_ts: 0.1 ms per asset, growing with the history).
-- Params: ids, cutoffs, last_src_ts, last_load_ts (arrays aligned by position), lookback (interval).
SELECT k.id,
       LEAST((SELECT min(s."timestamp") FROM cmc_price_histories7 s
              WHERE s.id = k.id AND s."timestamp" < k.cutoff
                AND s."timestamp" > k.last_src_ts - %(lookback)s::interval),
             (SELECT min(late.ts) FROM (SELECT s."timestamp" AS ts FROM cmc_price_histories7 s
                                        WHERE s.id = k.id AND s.load_ts > k.last_load_ts
                                          AND s."timestamp" < k.cutoff OFFSET 0) AS late)) AS first_changed_ts,
       (SELECT min(s."timestamp") FROM cmc_price_histories7 s
        WHERE s.id = k.id AND s."timestamp" < k.cutoff) AS src_min_ts,
       (SELECT max(s."timestamp") FROM cmc_price_histories7 s
        WHERE s.id = k.id AND s."timestamp" < k.cutoff) AS src_max_ts,
       (SELECT s.load_ts FROM cmc_price_histories7 s
        WHERE s.id = k.id AND s."timestamp" < k.cutoff ORDER BY s.load_ts DESC LIMIT 1) AS max_load_ts
FROM unnest(%(ids)s::integer[], %(cutoffs)s::timestamptz[], %(last_src_ts)s::timestamptz[],
            %(last_load_ts)s::timestamptz[]) AS k(id, cutoff, last_src_ts, last_load_ts)
