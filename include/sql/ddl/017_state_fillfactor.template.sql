-- 017_state_fillfactor (template): every state table keeps half of each heap page free.
-- A daily run rewrites nearly every state row (one per series); with free room on its page
-- the new row version stays there (a HOT update: no primary-key index entry to add), which
-- halves the staged upsert (21,000 rows: 115 ms -> 60 ms, decisions.md D-engine-10). Applied
-- to each state table of the registry after the tables exist; the ALTER only when the option
-- differs (it takes a SHARE UPDATE EXCLUSIVE lock even as a no-op). Pages written before keep
-- their layout until rewritten (VACUUM FULL, or a full rebuild's churn).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = '{state}'::regclass
                   AND 'fillfactor=50' = ANY(coalesce(reloptions, ARRAY[]::text[]))) THEN
        ALTER TABLE {state} SET (fillfactor = 50);
    END IF;
END
$$;
