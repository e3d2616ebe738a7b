-- bars_1d_changes_since: first 1d day changed after a consumer's cursor, and the newest rev.
-- Params: id, since_rev.
SELECT min(first_changed_ts) FILTER (WHERE rev > %(since_rev)s) AS first_changed_ts,
       coalesce(max(rev), 0) AS rev
FROM cmc_price_bars_1d_changes WHERE id = %(id)s
