-- Audiences: definitions, current members, membership history, the entered/exited event feed, and
-- scheduled re-checks for time windows.
CREATE TABLE audiences (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    condition     TEXT NOT NULL,          -- the condition in its text form
    origin        TEXT NOT NULL,          -- 'file' (AUDIENCES.md) or 'api'
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    backfill_total BIGINT NOT NULL DEFAULT 0,
    backfill_done  BIGINT NOT NULL DEFAULT 0,
    backfilled_at  BIGINT
);

CREATE TABLE audience_members (
    audience    TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    entered_at  BIGINT NOT NULL,
    PRIMARY KEY (audience, profile_id)
);
CREATE INDEX audience_members_profile ON audience_members (profile_id);

CREATE TABLE audience_history (
    id          BIGSERIAL PRIMARY KEY,
    audience    TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    entered_at  BIGINT NOT NULL,
    exited_at   BIGINT
);
CREATE INDEX audience_history_profile ON audience_history (profile_id);

-- The feed destinations subscribe to: one row per audience_entered / audience_exited.
CREATE TABLE audience_events (
    id          BIGSERIAL PRIMARY KEY,
    audience    TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('audience_entered', 'audience_exited')),
    at          BIGINT NOT NULL,
    seq         BIGINT NOT NULL,          -- the log message that caused it (0 for schedule/backfill)
    reason      TEXT NOT NULL             -- 'message', 'window', 'backfill', 'merge', 'delete'
);

-- When a windowed condition may flip for a profile (an event leaves a window).
CREATE TABLE audience_checks (
    audience    TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    due_at      BIGINT NOT NULL,
    PRIMARY KEY (audience, profile_id)
);
CREATE INDEX audience_checks_due ON audience_checks (due_at);

INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('audiences', 0, 0);
