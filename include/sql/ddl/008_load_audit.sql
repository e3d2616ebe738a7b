-- 008_load_audit: one row per file per `ta_lab2 load` command, written in the file's own
-- transaction (a file is audited exactly when its rows are committed). The CHECK is the
-- loader's accounting: every line read is loaded (inserted, updated or unchanged) or rejected.
CREATE TABLE IF NOT EXISTS cmc_load_audit (
    load_id      text NOT NULL,
    source_file  text NOT NULL,
    lines_read   integer NOT NULL,
    inserted     integer NOT NULL,
    updated      integer NOT NULL,
    unchanged    integer NOT NULL,
    rejected     integer NOT NULL,
    refused      text,  -- why the whole file was not loaded (bad header, empty file), else NULL
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (load_id, source_file),
    CONSTRAINT cmc_load_audit_balances CHECK (lines_read = inserted + updated + unchanged + rejected)
);
