"""The results store: records and their Arrow schema, the row builder, the Parquet store
(local or S3), its lock, and SQL queries."""
