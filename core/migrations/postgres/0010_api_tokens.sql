-- API tokens for backends (see core/src/backend_api): each carries scopes (profiles:read,
-- audiences:read, events:write, admin). Only the SHA-256 of a token is stored (lowercase hex);
-- the token itself is shown once, when it is created. `prefix` is its first characters, to tell
-- tokens apart in listings. A revoked token keeps its row with revoked_at set.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,          -- space-separated, e.g. 'profiles:read audiences:read'
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,                 -- written at most once a minute per token
    revoked_at    BIGINT
);

-- The members of an account (GET /v1/accounts/{group_id}), paged by profile id.
CREATE INDEX profile_accounts_group ON profile_accounts (group_id, profile_id);
