-- refresh_work: per asset, about how many days its refresh (re)computes: the source days after
-- its 1d watermark when it only gains new days (the daily run), else every day visible (a first
-- build, a full rebuild, or rows loaded since the last run at or before the watermark: a
-- revision or a backfill can rebuild its bars and EMAs over the whole history). It sizes the
-- CLI's batches (refresh/runner.py:pack_batches); it never decides what a step does.
-- Each value is index probes on the source's (id, timestamp) and (id, load_ts) keys; CASE
-- evaluates only the branch taken.
-- Params: ids (int[]), as_of (timestamptz, exclusive), full (bool).
SELECT k.id,
       CASE WHEN st.id IS NULL OR %(full)s OR st.last_src_ts IS NULL OR st.last_load_ts IS NULL
                 OR EXISTS (SELECT 1 FROM cmc_price_histories7 s
                            WHERE s.id = k.id AND s.load_ts > st.last_load_ts AND s."timestamp" <= st.last_src_ts)
            THEN (SELECT count(*) FROM cmc_price_histories7 s WHERE s.id = k.id AND s."timestamp" < %(as_of)s)
            ELSE (SELECT count(*) FROM cmc_price_histories7 s
                  WHERE s.id = k.id AND s."timestamp" > st.last_src_ts AND s."timestamp" < %(as_of)s)
       END AS days
FROM unnest(%(ids)s::integer[]) AS k(id)
LEFT JOIN cmc_price_bars_1d_state AS st ON st.id = k.id
