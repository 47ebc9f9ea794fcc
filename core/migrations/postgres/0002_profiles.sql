-- Identity graph, profiles, traits, accounts, merges and the processing cursor.
CREATE TABLE profiles (
    id           TEXT PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    merged_into  TEXT
);
CREATE INDEX profiles_merged_into ON profiles (merged_into);

-- Each identifier belongs to exactly one profile: the primary key is what stops duplicates.
CREATE TABLE identities (
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_profile ON identities (profile_id);

-- Which log messages make up a profile's timeline.
CREATE TABLE profile_messages (
    seq         BIGINT PRIMARY KEY,
    profile_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT,
    event_time  BIGINT NOT NULL
);
CREATE INDEX profile_messages_profile ON profile_messages (profile_id, event_time);

-- Traits, last write wins by event time (updated_at), not by arrival.
CREATE TABLE profile_traits (
    profile_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (profile_id, key)
);

CREATE TABLE account_traits (
    group_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, key)
);

CREATE TABLE profile_accounts (
    profile_id  TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    PRIMARY KEY (profile_id, group_id)
);

CREATE TABLE merges (
    id      BIGSERIAL PRIMARY KEY,
    winner  TEXT NOT NULL,
    loser   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX merges_winner ON merges (winner);
CREATE INDEX merges_loser ON merges (loser);

-- Identifiers resolution dropped (blocked values, limits, refused merges), with the message.
CREATE TABLE identity_reports (
    id          BIGSERIAL PRIMARY KEY,
    seq         BIGINT NOT NULL,
    profile_id  TEXT,
    kind        TEXT NOT NULL,
    id_kind     TEXT NOT NULL,
    id_value    TEXT NOT NULL,
    detail      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX identity_reports_profile ON identity_reports (profile_id);

-- Identifiers of deleted profiles: messages carrying them are dropped.
CREATE TABLE suppressions (
    kind   TEXT NOT NULL,
    value  TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);

-- Where each pipeline stage stopped; generation changes when profiles are deleted (cache reset).
CREATE TABLE pipeline_cursors (
    name        TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    generation  BIGINT NOT NULL
);
INSERT INTO pipeline_cursors (name, seq, generation) VALUES ('profiles', 0, 0);
