-- validation_duplicate_keys: key groups of {table} holding more than one row, for the given
-- assets (run only for a table whose primary key is missing or not the expected one).
-- Params: ids (int[]). Identifiers: {table}; {key} is the expected key's column list.
SELECT count(*) AS n_groups, COALESCE(sum(n - 1), 0) AS n_extra
FROM (SELECT count(*) AS n FROM {table} WHERE id = ANY(%(ids)s) GROUP BY {key} HAVING count(*) > 1) g
