-- A source shows its last backup (issue 11): `lastJob` is the job the source's latest SyncRequested queued,
-- whatever has become of it since. The projector keeps `last_job_id` from SyncRequested; the job's status,
-- finish and totals are read from its `read_jobs` row, which follows the Job stream.
ALTER TABLE read_sources ADD COLUMN last_job_id text;

-- Sources that already had jobs: their most recently queued one (the log order of their SyncRequested).
UPDATE read_sources s SET last_job_id = (
    SELECT j.job_id FROM read_jobs j
     WHERE j.source_id = s.source_id
     ORDER BY j.queued_at DESC, j.job_id DESC
     LIMIT 1);
