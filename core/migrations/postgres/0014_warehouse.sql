-- The warehouse export (core/src/warehouse), PostgreSQL: the Parquet files committed so far, and the cursors of
-- the Parquet and PostgreSQL targets over the log and over the audience feed. A file is recorded
-- here in the same transaction as the cursor move that covers it; a file on disk without a row is
-- the leftover of an interrupted step and is deleted before the next one.
CREATE TABLE warehouse_files (
    path        TEXT PRIMARY KEY,     -- relative to TOUCHPOINT_WAREHOUSE_DIR
    collection  TEXT NOT NULL,        -- events, pages, identifies, audiences, id_graph_updates, …
    first_seq   BIGINT NOT NULL,      -- the range its name covers (log positions, or audience-feed ids)
    last_seq    BIGINT NOT NULL,
    row_count   BIGINT NOT NULL,
    byte_count  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX warehouse_files_created ON warehouse_files (created_at);

-- Identity changes are exported by the log position that caused them.
CREATE INDEX identities_seq ON identities (seq);
CREATE INDEX merges_seq ON merges (seq);

INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('warehouse_parquet', 0, 0);
INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('warehouse_parquet_audiences', 0, 0);
INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('warehouse_postgres', 0, 0);
INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('warehouse_postgres_audiences', 0, 0);
