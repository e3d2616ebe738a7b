-- validation_primary_keys: for each named table, whether it exists and the columns of its
-- primary key (NULL when it has none), read from the catalog only.
-- Params: tables (text[] of table names, resolved on the search_path).
SELECT t.name AS table_name, to_regclass(t.name) IS NOT NULL AS exists,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
        FROM pg_constraint c
        CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.conrelid = to_regclass(t.name) AND c.contype = 'p' AND c.convalidated) AS pk_columns
FROM unnest(%(tables)s::text[]) AS t(name)
ORDER BY t.name
