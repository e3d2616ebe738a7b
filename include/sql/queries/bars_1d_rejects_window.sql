-- bars_1d_rejects_window: stored rejects of a batch of assets, each from its start on (NULL = all).
-- One index range scan per asset (LATERAL, a sargable bound; see bars_1d_window).
-- Params: ids, from_ts (arrays aligned by position).
SELECT r.id, r."timestamp", r.reason
FROM unnest(%(ids)s::integer[], %(from_ts)s::timestamptz[]) AS k(id, from_ts)
CROSS JOIN LATERAL (SELECT * FROM cmc_price_bars_1d_rejects
                    WHERE id = k.id AND "timestamp" >= coalesce(k.from_ts, '-infinity') OFFSET 0) AS r
