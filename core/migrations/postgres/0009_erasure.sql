-- Erasure (see core/src/privacy): suppressions keyed by hashes instead of plaintext identifiers,
-- and one regulation per erasure request with its status per destination (like Segment's
-- Regulations API).

-- Identifiers of erased profiles, as lowercase hex SHA-256 of "kind:value": messages carrying one
-- are dropped. The plaintext rows of earlier versions are hashed here and the old table dropped.
CREATE TABLE suppression_hashes (
    hash  TEXT PRIMARY KEY,
    at    BIGINT NOT NULL
);
INSERT INTO suppression_hashes (hash, at)
SELECT encode(sha256(convert_to(kind || ':' || value, 'UTF8')), 'hex'), MIN(at)
FROM suppressions GROUP BY kind, value
ON CONFLICT DO NOTHING;
DROP TABLE suppressions;

CREATE TABLE regulations (
    id              TEXT PRIMARY KEY,        -- returned by DELETE /admin/profiles/{id}
    kind            TEXT NOT NULL,           -- 'erase'
    profile_id      TEXT NOT NULL,           -- the erased profile (a random id)
    subject_hashes  TEXT NOT NULL,           -- JSON array: SHA-256 of "kind:value" of its identifiers
    subject         TEXT,                    -- what destinations need (JSON); NULL once all finished
    status          TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    requested_at    BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX regulations_requested ON regulations (requested_at);

CREATE TABLE regulation_destinations (
    regulation       TEXT NOT NULL REFERENCES regulations(id),
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'not_supported')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,        -- due time (ms); while 'running', the claim's lease end
    last_error       TEXT,                   -- the API's own message
    detail           TEXT,                   -- what was done, or why it is not supported
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (regulation, destination)
);
CREATE INDEX regulation_destinations_due ON regulation_destinations (status, next_attempt_at);
