-- Messages a pipeline stage could not process after bounded retries, set aside with the error so
-- the stage moves on. `position` is the stage's cursor position (a log seq, or an audience-event id
-- for the destinations' audience cursor). A replayed entry keeps its row with replayed_at set.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    stage           TEXT NOT NULL,
    cursor_name     TEXT NOT NULL,
    position        BIGINT NOT NULL,
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    quarantined_at  BIGINT NOT NULL,
    replayed_at     BIGINT,
    replay_error    TEXT
);
CREATE INDEX quarantine_open ON quarantine (stage, replayed_at);
