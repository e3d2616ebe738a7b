-- source_files_put: record one loaded file content (same transaction as its rows).
-- Params: sha256, location, file_name, size_bytes, asset_id, rows_inserted, rows_updated, rows_rejected.
INSERT INTO source_files (sha256, location, file_name, size_bytes, asset_id, rows_inserted, rows_updated,
                          rows_rejected)
VALUES (%(sha256)s, %(location)s, %(file_name)s, %(size_bytes)s, %(asset_id)s, %(rows_inserted)s,
        %(rows_updated)s, %(rows_rejected)s)
ON CONFLICT (sha256) DO NOTHING
