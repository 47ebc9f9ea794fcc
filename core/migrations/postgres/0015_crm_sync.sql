-- CRM sync (issue 14): a watermark per CRM object, what Touchpoint knows of each CRM record it has
-- seen, and the last known value of every synced field — what we wrote (origin 'out', for echo
-- suppression) or what the CRM changed and when (origin 'in', for last-modified-wins per field).
-- Record keys and field values are SHA-256 digests (only compared), so no person's identifiers
-- are copied here.
CREATE TABLE crm_watermarks (
    crm          TEXT NOT NULL,
    object       TEXT NOT NULL,
    modified_at  BIGINT NOT NULL,            -- newest SystemModstamp / hs_lastmodifieddate read (ms)
    deleted_at   BIGINT NOT NULL,            -- deletions read up to (ms)
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (crm, object)
);

CREATE TABLE crm_records (
    crm          TEXT NOT NULL,
    object       TEXT NOT NULL,
    record_id    TEXT NOT NULL,              -- the CRM's id
    record_key   TEXT NOT NULL,              -- digest of the external key (userId, groupId, email) or 'id:<record_id>'
    who          TEXT,                       -- unused (NULL): identities are looked up, never copied
    group_id     TEXT,                       -- the account it belongs to (or is)
    converted    TEXT,                       -- a converted Lead's Contact id
    pending      TEXT,                       -- an account change waiting for a known member (JSON)
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (crm, object, record_id)
);
CREATE INDEX crm_records_key ON crm_records (crm, object, record_key);

CREATE TABLE crm_fields (
    crm          TEXT NOT NULL,
    object       TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    field        TEXT NOT NULL,
    value        TEXT NOT NULL,              -- digest of the canonical text of the value last written or read
    modified_at  BIGINT NOT NULL,            -- when it was set (ms): the CRM's or our trait's time
    origin       TEXT NOT NULL CHECK (origin IN ('in', 'out')),
    PRIMARY KEY (crm, object, record_key, field)
);
