-- ema_refresh_state_put: record the 1d watermark an EMA refresher consumed ({column} identifier).
INSERT INTO cmc_ema_refresh_state AS s (id, {column}, updated_at) VALUES (%(id)s, %(ts)s, now())
ON CONFLICT (id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now()
