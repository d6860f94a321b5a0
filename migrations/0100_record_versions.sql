-- Snapshots and record history (issue 13 §4): a compact per-source index of record versions.
--
-- Written in two steps so that only committed backups are ever visible:
--   1. the worker stages one row per record it stores (`record_index_staged`, keyed by job and attempt) and
--      one per data file it finishes (`record_index_staged_files`);
--   2. the record indexer (a catch-up reader of the event log, checkpoint `record-index`) merges the staged
--      rows of the attempt that ended the job into `record_versions` when it reads JobSucceeded or
--      JobPartiallySucceeded, in one transaction with the backup's `source_snapshots` row, whose primary key
--      makes the merge happen once; JobFailed and JobCancelled drop the job's staged rows.

CREATE TABLE record_index_staged (
    job_id         uuid     NOT NULL,
    attempt        integer  NOT NULL,
    data_type      text     NOT NULL,
    record_id      text     NOT NULL,
    -- the first 16 bytes of the SHA-256 of the record's JSON text as stored
    content_hash   bytea    NOT NULL,
    -- 0-based line of the record in the job's {dataType}.ndjson.gz
    ordinal        integer  NOT NULL,
    PRIMARY KEY (job_id, attempt, data_type, record_id)
);

CREATE TABLE record_index_staged_files (
    job_id     uuid     NOT NULL,
    attempt    integer  NOT NULL,
    data_type  text     NOT NULL,
    -- false: an incremental fetch (only changes); true: the whole data type
    complete   boolean  NOT NULL,
    records    bigint   NOT NULL,
    PRIMARY KEY (job_id, attempt, data_type)
);

-- One row per succeeded or partial backup merged into the index: the source's points in time.
CREATE TABLE source_snapshots (
    source_id    uuid        NOT NULL,
    -- 1, 2, 3… per source, in the order the backups ended
    seq          integer     NOT NULL,
    job_id       uuid        NOT NULL UNIQUE,
    account_id   text        NOT NULL,
    finished_at  timestamptz NOT NULL,
    -- whether any data type of the backup was fetched incrementally
    incremental  boolean     NOT NULL,
    partial      boolean     NOT NULL,
    -- the merged state as of this backup: {dataType: records}
    counts       jsonb       NOT NULL,
    -- what this backup changed: {dataType: {added, changed, deleted}}
    changes      jsonb       NOT NULL,
    PRIMARY KEY (source_id, seq)
);

-- A version of a record: its content, from the backup that first held it to the last one that did
-- (`last_seq` null: the latest backup still holds it). Its bytes are line `ordinal` of the data file of the
-- backup `first_seq` (that backup stored it: a full backup every record, an incremental one what changed).
CREATE TABLE record_versions (
    source_id     uuid     NOT NULL,
    data_type     text     NOT NULL,
    record_id     text     NOT NULL,
    first_seq     integer  NOT NULL,
    last_seq      integer,
    content_hash  bytea    NOT NULL,
    ordinal       integer  NOT NULL,
    -- a snapshot's page reads its records in the order they were stored: file by file, line by line
    PRIMARY KEY (source_id, data_type, first_seq, ordinal)
);
-- One record's versions (its history; the merge finds and closes its current one).
CREATE INDEX record_versions_record ON record_versions (source_id, data_type, record_id, first_seq);
