-- Sources and the durable message log (PostgreSQL).
CREATE TABLE sources (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    write_key   TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- seq is the log position. dedup_key is the messageId while inside the dedup window, then NULL.
CREATE TABLE messages (
    seq           BIGSERIAL PRIMARY KEY,
    source_id     BIGINT NOT NULL REFERENCES sources(id),
    message_id    TEXT NOT NULL,
    dedup_key     TEXT,
    kind          TEXT NOT NULL,
    event         TEXT,
    user_id       TEXT,
    anonymous_id  TEXT,
    event_time    BIGINT NOT NULL,
    received_at   BIGINT NOT NULL,
    plan_version  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'flagged', 'blocked')),
    violations    JSONB NOT NULL,
    body          JSONB NOT NULL
);
CREATE UNIQUE INDEX messages_dedup ON messages (source_id, dedup_key);
CREATE INDEX messages_dedup_expiry ON messages (received_at) WHERE dedup_key IS NOT NULL;
CREATE INDEX messages_message_id ON messages (message_id);

CREATE TABLE rejected_messages (
    id           BIGSERIAL PRIMARY KEY,
    source_id    BIGINT NOT NULL REFERENCES sources(id),
    received_at  BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    body         TEXT NOT NULL
);
