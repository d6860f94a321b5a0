-- The worker stages a backup's index rows with COPY, in batches written beside the fetch (issue 13 §4; the
-- backup rate had halved with one awaited INSERT … ON CONFLICT per 1,000 records). COPY cannot upsert, so a
-- record listed twice in one fetch (a page boundary shifting under an insert) is staged twice and the merge
-- keeps its last line (DISTINCT ON … ORDER BY ordinal DESC); the unique key goes, and what finds a job's rows
-- (the merge, the clean-ups) is a plain index on the job, cheaper to keep up than one reaching down to the
-- record's id.
ALTER TABLE record_index_staged DROP CONSTRAINT record_index_staged_pkey;
CREATE INDEX record_index_staged_job ON record_index_staged (job_id, attempt, data_type);
