-- bars_1d_change_put: append one entry to the 1d change feed.
INSERT INTO cmc_price_bars_1d_changes (id, rev, first_changed_ts, rows_changed, is_rebuild)
VALUES (%(id)s, %(rev)s, %(first_changed_ts)s, %(rows_changed)s, %(is_rebuild)s)
