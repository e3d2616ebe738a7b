-- bars_1d_rejects_window: stored rejects of a batch of assets, each from its start on (NULL = all).
-- Params: ids, from_ts (arrays aligned by position).
SELECT r.id, r."timestamp", r.reason
FROM unnest(%(ids)s::integer[], %(from_ts)s::timestamptz[]) AS k(id, from_ts)
JOIN cmc_price_bars_1d_rejects r ON r.id = k.id AND (k.from_ts IS NULL OR r."timestamp" >= k.from_ts)
