"""The only package that executes SQL: connection resolution, schema, reads and writes."""
