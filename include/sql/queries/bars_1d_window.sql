-- bars_1d_window: stored 1d rows of a batch of assets, each from its start on (NULL = all).
-- One primary-key range scan per asset: a LATERAL subquery with a sargable bound, kept from
-- being flattened into a join by OFFSET 0 (the planner estimates 10 rows for unnest and then
-- hash-joins a sequential scan of the whole table, O(history) on a daily run; the OR on a NULL
-- bound did the same).
-- Params: ids, from_ts (arrays aligned by position).
SELECT b.id, b.tf, b.bar_seq, b."timestamp", b.time_open, b.time_close, b.time_high, b.time_low, b.open,
       b.high, b.low, b.close, b.volume, b.market_cap, b.is_partial_start, b.is_partial_end,
       b.is_missing_days, b.count_missing_days
FROM unnest(%(ids)s::integer[], %(from_ts)s::timestamptz[]) AS k(id, from_ts)
CROSS JOIN LATERAL (SELECT * FROM cmc_price_bars_1d
                    WHERE id = k.id AND "timestamp" >= coalesce(k.from_ts, '-infinity') OFFSET 0) AS b
ORDER BY b.id, b."timestamp"
