-- Bot accounts and API tokens. A bot cannot log in with a password; it
-- authenticates with tokens. Only the SHA-256 of a token is stored, so a copy
-- of the table does not hand out access.
ALTER TABLE accounts_user DROP CONSTRAINT IF EXISTS accounts_user_role_check;
ALTER TABLE accounts_user ADD CONSTRAINT accounts_user_role_check
    CHECK (role IN ('viewer', 'moderator', 'streamer', 'admin', 'bot'));

CREATE TABLE accounts_api_token (
    id           bigserial PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE,
    user_id      bigint NOT NULL REFERENCES accounts_user (id) ON DELETE CASCADE,
    scopes       text[] NOT NULL
                 CHECK (scopes <@ ARRAY['read', 'chat', 'moderate']::text[]
                        AND cardinality(scopes) > 0),
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX accounts_api_token_user_idx ON accounts_api_token (user_id);
