-- Encryption at rest of backups (issue 13 §2): one random 256-bit data key per account, which encrypts the
-- account's backup files (workers/src/storage/encryption.rs). The data key is stored only wrapped: encrypted
-- with AES-256-GCM under the master key (LISTBACKUP_MASTER_KEY), as the credential vault's rows are
-- (commands/src/data_keys.rs). Rotation is the vault's: a row names the master key that wrapped it, retired
-- master keys (LISTBACKUP_MASTER_KEYS_PREVIOUS) still unwrap, and a re-wrap moves rows to the current key.
--
-- Erasing an account overwrites its row: the wrapped key is gone (NULL) and `erased_at` says when; the row
-- stays as a tombstone so that no new data key is ever made for an erased account.
CREATE TABLE account_data_keys (
    account_id    text        PRIMARY KEY,
    -- The data key's id, written into the header of every file it encrypts: `dk_` and 32 hex digits, random.
    key_id        text        NOT NULL UNIQUE,
    -- Which master key wrapped the data key: first 8 bytes of SHA-256(master key), hex. NULL once erased.
    master_key_id text,
    -- The 96-bit AES-GCM nonce of the wrapping, fresh for every wrapping. NULL once erased.
    nonce         bytea,
    -- AES-256-GCM output (32-byte key || 16-byte tag), bound by its AAD to (account_id, key_id). NULL once erased.
    wrapped_key   bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- When the account was erased (its key destroyed); NULL while it is not.
    erased_at     timestamptz,
    CHECK ((erased_at IS NULL) = (wrapped_key IS NOT NULL AND nonce IS NOT NULL AND master_key_id IS NOT NULL))
);

-- A re-wrap scans for rows not yet under the current master key.
CREATE INDEX account_data_keys_master_key_id ON account_data_keys (master_key_id);
