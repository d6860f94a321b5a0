-- Restore jobs (issue 13 §5): a job is a backup or a restore. A restore's row carries its request and its
-- counts so far (`restore`: snapshot, dataTypes, recordIds, mode, dryRun, created, updated, skipped, failed),
-- folded from the source's RestoreRequested and the job's RecordsRestored. Existing rows are backups.
ALTER TABLE read_jobs ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'backup';
ALTER TABLE read_jobs ADD COLUMN IF NOT EXISTS restore jsonb;
