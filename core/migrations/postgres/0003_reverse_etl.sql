-- Incremental cursors of reverse-ETL syncs: the last cursor value whose rows are durably in the log.
CREATE TABLE sync_cursors (
    name        TEXT PRIMARY KEY,
    value       TEXT,
    updated_at  BIGINT NOT NULL
);
