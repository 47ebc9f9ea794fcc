-- Destinations: the durable outbox, one row per (destination, activation); the delivery log, one row
-- per API call; and the cursors of the activation stage (over the log and over audience_events.id).
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    destination      TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    payload          TEXT NOT NULL,          -- the activation as JSON
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,        -- due time (ms); while 'delivering', the claim's lease end
    last_error       TEXT,                   -- the API's own message
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (destination, idempotency_key)
);
CREATE INDEX outbox_due ON outbox (destination, status, next_attempt_at, id);

CREATE TABLE delivery_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    destination  TEXT NOT NULL,
    outbox_ids   TEXT NOT NULL,              -- JSON array of the outbox rows the call carried
    request      TEXT NOT NULL,              -- what was called, e.g. 'PATCH Account upsert (12 records)'
    status_code  BIGINT,                     -- NULL when no HTTP answer (network error, not sent)
    duration_ms  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,              -- success | retry | partial | dead
    error        TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX delivery_log_destination ON delivery_log (destination, id);

INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('destinations', 0, 0);
INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('destinations_audiences', 0, 0);
