-- Operations (issue 14 §1): GET /metrics counts the queued and running jobs by platform at every scrape. A
-- partial index holds only those rows, so the count reads a handful of entries however many finished jobs
-- the read model keeps.
CREATE INDEX read_jobs_active ON read_jobs (status, platform_id) WHERE status IN ('queued', 'running');
