-- load_rejects_clear: forget the rejects of a file's previous load (its new load records its
-- own). Params: source_file.
DELETE FROM cmc_load_rejects WHERE source_file = %(source_file)s
