-- The log file of the embedded default (`<name>-log.db` next to the state file `<name>.db`):
-- sources and the durable message log, written by ingestion behind a write gate of its own so an
-- append never waits behind a pipeline stage's commit. The same tables as the state migrations'
-- 0001_ingest.sql (which an upgraded database had in its one file, moved here at start-up); a
-- change to these tables goes here, not into migrations/sqlite.
CREATE TABLE sources (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    write_key   TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- seq is the log position: monotonic, never reused (AUTOINCREMENT).
-- dedup_key is the messageId while it is inside the dedup window, then NULL (NULLs never conflict).
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id     INTEGER NOT NULL REFERENCES sources(id),
    message_id    TEXT NOT NULL,
    dedup_key     TEXT,
    kind          TEXT NOT NULL,
    event         TEXT,
    user_id       TEXT,
    anonymous_id  TEXT,
    event_time    INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    plan_version  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'flagged', 'blocked')),
    violations    TEXT NOT NULL,
    body          TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_dedup ON messages (source_id, dedup_key);
CREATE INDEX messages_dedup_expiry ON messages (received_at) WHERE dedup_key IS NOT NULL;
CREATE INDEX messages_message_id ON messages (message_id);

-- Items a known source sent that were not messages at all (missing ids, unknown type, too large…).
CREATE TABLE rejected_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id    INTEGER NOT NULL REFERENCES sources(id),
    received_at  INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    body         TEXT NOT NULL
);
