-- source_files_all: (sha256, location) of every file content the ingest step has loaded.
SELECT sha256, location FROM source_files ORDER BY loaded_at
