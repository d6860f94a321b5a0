-- Read models: built only by the projector from the event log, rebuilt by `listbackup projections rebuild`.
-- Every column derives from events (times from `recorded_at`), so a rebuild reproduces the table exactly.
CREATE TABLE read_connections (
    connection_id          text        PRIMARY KEY,
    account_id             text        NOT NULL,
    platform_id            text        NOT NULL,
    name                   text        NOT NULL,
    auth_type              text        NOT NULL,
    status                 text        NOT NULL,
    settings               jsonb       NOT NULL DEFAULT '{}',
    credential_fields      jsonb       NOT NULL DEFAULT '[]',
    credential_fingerprint text,
    last_test              jsonb,
    version                bigint      NOT NULL,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);

-- Lists are per account, newest first (ids are UUID v7, so id order is creation order).
CREATE INDEX read_connections_account ON read_connections (account_id, connection_id DESC);

-- Idempotency-Key bookkeeping for POST requests (DESIGN §4).
CREATE TABLE idempotency_keys (
    account_id     text        NOT NULL,
    key            text        NOT NULL,
    request_digest text        NOT NULL,
    status         smallint,
    response       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
