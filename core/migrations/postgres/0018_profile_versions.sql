-- A profile's version (PostgreSQL only: SQLite runs one profiles stage, which never races another), bumped in the transaction that changes its identifiers (an identifier
-- attached, a merge). Profile stages of different log partitions run at once; each locks the
-- profiles a batch touches and redoes the batch when a version moved since it read them.
ALTER TABLE profiles ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
