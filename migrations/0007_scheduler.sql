-- The scheduler (issue 5): what it needs of each source, derived from events like every read-model column.
--   next_scheduled_at   the first slot of the schedule nobody has handled yet: the first slot after the source's
--                       creation, its last schedule change, its resumption or its last handled slot, whichever
--                       is latest. NULL while paused or deleted, and for manual schedules.
--   last_scheduled_slot the last slot handled (its job queued, or skipped), from SyncRequested.slot / SyncSkipped
--   last_skipped_slot   the last slot skipped because the previous job was unfinished, from SyncSkipped
ALTER TABLE read_sources
    ADD COLUMN next_scheduled_at   timestamptz,
    ADD COLUMN last_scheduled_slot timestamptz,
    ADD COLUMN last_skipped_slot   timestamptz;

-- Every scheduler asks which sources are due now: the few rows with a slot at or before now.
CREATE INDEX read_sources_due ON read_sources (next_scheduled_at, source_id)
    WHERE next_scheduled_at IS NOT NULL;

-- The new columns come from the log, not from SQL (schedules are cron expressions and IANA zones), so the
-- read models are projected again from the start, exactly as `listbackup projections rebuild` does: the
-- projector of the first process to start after this migration replays the log (lists are briefly incomplete
-- meanwhile).
TRUNCATE read_connections, read_sources, read_source_groups, read_source_group_members, read_jobs;
UPDATE checkpoints SET transaction_id = '0', position = 0 WHERE name = 'projector';
