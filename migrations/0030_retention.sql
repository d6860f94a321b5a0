-- Retention, holds and verification (issue 13 §1, §3).
--
-- Read models (written by the projector from the Job and Source streams):
ALTER TABLE read_sources ADD COLUMN keep_last integer;
ALTER TABLE read_jobs
    -- {reason, by, at} of the hold the backup is under (BackupHeld), null once released
    ADD COLUMN hold jsonb,
    -- BackupExpired: when, and what its directory held (the storage freed)
    ADD COLUMN expired_at timestamptz,
    ADD COLUMN expired_files bigint,
    ADD COLUMN expired_bytes bigint,
    -- the last BackupVerified / BackupCorrupted: {status, at, files?, bytes?, file?, expected?, found?}
    ADD COLUMN verification jsonb,
    ADD COLUMN verified_at timestamptz;

-- The retention sweep reads a source's stored, unexpired backups; the verifier the least recently verified.
CREATE INDEX read_jobs_retention ON read_jobs (source_id, finished_at)
    WHERE status IN ('succeeded', 'partial') AND expired_at IS NULL;
CREATE INDEX read_jobs_expired ON read_jobs (expired_at) WHERE expired_at IS NOT NULL;
CREATE INDEX read_jobs_verification ON read_jobs (verified_at NULLS FIRST, finished_at)
    WHERE status IN ('succeeded', 'partial') AND expired_at IS NULL;

-- Not a read model: the workers' note that an expired backup's objects are deleted. BackupExpired is
-- recorded first (the Job aggregate decides, once); the deletion follows, and a sweep finishes the deletion
-- of any expired backup that has no row here (its sweeper died in between).
CREATE TABLE backup_purges (
    job_id    text        PRIMARY KEY,
    purged_at timestamptz NOT NULL DEFAULT now()
);
