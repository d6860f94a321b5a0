-- Restores (issue 13 §5): which record a restore created for which backed-up one, per source, so a later
-- restore recognises a record an earlier one re-created under a new id instead of creating it twice.
--
-- Written by the worker right after the platform answered a create (before the report line), so a crash
-- between the two loses nothing: the next attempt repeats the write with the same Idempotency-Key, gets the
-- same record back and writes the row then. A record re-created again later (its new id deleted too) moves the
-- row to the newest id; a snapshot taken after a restore holds the new id as the record's own, and its row
-- maps onwards from there (a restore follows the chain).
CREATE TABLE IF NOT EXISTS restore_id_map (
    source_id   uuid        NOT NULL,
    data_type   text        NOT NULL,
    -- the record's id in the backup
    old_id      text        NOT NULL,
    -- the id the platform gave the record the restore created
    new_id      text        NOT NULL,
    account_id  text        NOT NULL,
    -- the restore job that created it
    job_id      uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, data_type, old_id)
);
