-- Notifications (issue 14 §5): webhooks and e-mail targets, their signing secrets, and the delivery queue.

-- The webhooks' read model (projections/src/read_models/webhooks.rs), folded from the Webhook aggregate's
-- events like every read model; never holds the signing secret.
CREATE TABLE read_webhooks (
    webhook_id  text        PRIMARY KEY,
    account_id  text        NOT NULL,
    url         text        NOT NULL,
    -- The notification types it subscribes to, as a JSON array of dotted names (`["job.failed"]`).
    events      jsonb       NOT NULL,
    description text,
    status      text        NOT NULL,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX read_webhooks_account ON read_webhooks (account_id, webhook_id DESC) WHERE status <> 'deleted';

-- Signing secrets (`whsec_…`), encrypted with AES-256-GCM under the master key as the credential vault's
-- rows are (commands/src/webhooks.rs): the AAD binds a row to (account_id, webhook_id). Deleted with the
-- webhook.
CREATE TABLE webhook_secrets (
    account_id  text        NOT NULL,
    webhook_id  text        NOT NULL,
    key_id      text        NOT NULL,
    nonce       bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, webhook_id)
);

-- The delivery queue: one row per notification and target, written by the notification dispatcher (a reader
-- of the event log, in the same transaction as its checkpoint) or by `POST /webhooks/{id}/test`, and worked
-- off by the sender. Operational state, not a read model: a rebuild leaves it alone.
CREATE TABLE webhook_deliveries (
    delivery_id     uuid        PRIMARY KEY,
    -- Queue order: deliveries of one (webhook_id, ordering_key) are sent in this order, one at a time.
    seq             bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    webhook_id      text        NOT NULL,
    account_id      text        NOT NULL,
    -- What order is kept per: `source:<id>` for job and backup notifications, `connection:<id>`, `ping:<id>`.
    ordering_key    text        NOT NULL,
    -- The notification's id (the event's id; a fresh one for a ping): the `Webhook-Id` header, the same on
    -- every attempt, so receivers can drop a repeat.
    notification_id uuid        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    -- pending → delivered, or failed once given up.
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    UNIQUE (webhook_id, notification_id)
);

CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, ordering_key, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, seq DESC);

-- Every attempt of a delivery: when, how it went, how long it took, and when the next one is due.
CREATE TABLE webhook_delivery_attempts (
    delivery_id     uuid        NOT NULL REFERENCES webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt         integer     NOT NULL,
    attempted_at    timestamptz NOT NULL,
    -- The receiver's HTTP status; NULL when there was no response (refused, timed out) and for e-mail.
    status_code     integer,
    duration_ms     bigint      NOT NULL,
    -- Why it failed (never a secret); NULL when it was delivered.
    error           text,
    -- The first 256 characters of the response body, no more.
    response_excerpt text,
    -- When the next attempt is due; NULL after the last one.
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
