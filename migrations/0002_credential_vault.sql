-- The credential vault: the secrets of platform connections (API keys, OAuth tokens), encrypted with AES-256-GCM
-- under a master key (commands/src/vault.rs). Events never hold secrets: they carry the `key_id` and `fingerprint`
-- of a row here. Rows are mutable on purpose (re-encryption on key rotation, destruction on disconnect), unlike
-- the append-only `events` table.
CREATE TABLE credential_vault (
    account_id    text        NOT NULL,
    connection_id text        NOT NULL,
    -- Which master key encrypted the row: first 8 bytes of SHA-256(key), hex. Identifies the key, never reveals it.
    key_id        text        NOT NULL,
    -- The 96-bit AES-GCM nonce, fresh for every encryption.
    nonce         bytea       NOT NULL,
    -- AES-256-GCM output (ciphertext || 16-byte tag), bound by its AAD to (account_id, connection_id).
    ciphertext    bytea       NOT NULL,
    -- Keyed HMAC of the secret (16 hex chars), safe to put in events.
    fingerprint   text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, connection_id)
);

-- Rotation scans for rows not yet under the current key.
CREATE INDEX credential_vault_key_id ON credential_vault (key_id);
