-- Lead scoring and handoff (issue 15): the last score emitted per person (so an unchanged score is
-- not sent again), the handoff log (rule, score, team, rep, state, what the Task and email carried,
-- and which CRM and email steps are done), and the handoff stage's cursor.
CREATE TABLE lead_scores (
    profile_id   TEXT PRIMARY KEY,
    score        BIGINT NOT NULL,
    breakdown    TEXT NOT NULL,              -- JSON: factor -> points
    updated_at   BIGINT NOT NULL
);

CREATE TABLE handoffs (
    id           BIGSERIAL PRIMARY KEY,
    profile_id   TEXT NOT NULL,
    rule         TEXT NOT NULL,              -- the rule in LEAD_HANDOFF.md that fired
    kind         TEXT NOT NULL,              -- 'score', 'behaviour' or 'nurture'
    priority     TEXT NOT NULL,              -- 'immediate', 'priority' or 'standard'
    score        BIGINT NOT NULL,
    team         TEXT NOT NULL,
    rep          TEXT NOT NULL,
    how          TEXT NOT NULL,              -- how the rep was chosen (territory, round robin)
    state        TEXT NOT NULL CHECK (state IN ('pending', 'open', 'reminded', 'completed', 'failed')),
    brief        TEXT NOT NULL,              -- JSON: summary, engagement history, score breakdown
    progress     TEXT NOT NULL,              -- JSON: CRM records, owners, Task ids, emails sent
    attempts     BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    reminded_at  BIGINT,
    closed_at    BIGINT
);
CREATE INDEX handoffs_profile ON handoffs (profile_id, created_at);
CREATE INDEX handoffs_state ON handoffs (state);

INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('handoff', 0, 0);
