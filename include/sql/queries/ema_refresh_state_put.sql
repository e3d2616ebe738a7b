-- ema_refresh_state_put: record the 1d watermark an EMA refresher consumed ({column} identifier),
-- for every asset of a batch in one statement. Params: ids (int[]), ts (timestamptz[]), pairwise.
INSERT INTO cmc_ema_refresh_state AS s (id, {column}, updated_at)
SELECT k.id, k.ts, now() FROM unnest(%(ids)s::integer[], %(ts)s::timestamptz[]) AS k(id, ts)
ON CONFLICT (id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now()
