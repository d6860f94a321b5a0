-- OAuth connections (issue 3).

-- Authorization requests in flight: one row per `POST /connections/oauth/start` (or reconnect), consumed once by
-- the callback, whichever API instance receives it. Only a SHA-256 of the state is kept (the state itself is a
-- bearer secret), and the PKCE verifier is stored encrypted under a key derived from the state: a copy of this
-- table alone reveals neither.
CREATE TABLE oauth_states (
    state_hash          bytea       PRIMARY KEY,
    account_id          text        NOT NULL,
    user_id             text        NOT NULL,
    platform_id         text        NOT NULL,
    -- The connection being reconnected; NULL when the flow creates a new one.
    connection_id       text,
    name                text,
    return_url          text,
    shop                text,
    verifier_nonce      bytea       NOT NULL,
    verifier_ciphertext bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz
);

CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);

-- When each OAuth connection's access token expires, for the background refresher (the tokens themselves are in
-- `credential_vault`). Operational state, not a read model: written by the write side next to the vault.
CREATE TABLE oauth_tokens (
    connection_id text        PRIMARY KEY,
    account_id    text        NOT NULL,
    platform_id   text        NOT NULL,
    expires_at    timestamptz,
    refreshable   boolean     NOT NULL,
    -- Set when the platform refused the grant; cleared by a reconnect.
    needs_reauth  boolean     NOT NULL DEFAULT false,
    -- After a transient refresh failure the background refresher leaves the connection alone until then.
    retry_after   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX oauth_tokens_due ON oauth_tokens (expires_at) WHERE refreshable AND NOT needs_reauth;

-- The read model shows which platform account an OAuth connection is authorized for.
ALTER TABLE read_connections ADD COLUMN external_account jsonb;
