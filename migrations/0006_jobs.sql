-- Jobs (issue 5): the job read model. A job's row is born from its source's SyncRequested (queued) and then
-- follows the Job stream; `source_version` and `version` guard each side separately so replays change nothing.
CREATE TABLE read_jobs (
    job_id          text        PRIMARY KEY,
    account_id      text        NOT NULL,
    source_id       text        NOT NULL,
    connection_id   text        NOT NULL,
    platform_id     text        NOT NULL,
    group_id        text,
    trigger         text        NOT NULL,
    -- queued | running | succeeded | failed | cancelled
    status          text        NOT NULL,
    attempt         integer     NOT NULL DEFAULT 0,
    retry_of        text,
    -- {dataTypesTotal, dataTypesDone, currentDataType, records, bytes}
    progress        jsonb       NOT NULL DEFAULT '{}',
    -- [{name, status, records, bytes, sha256}]
    data_types      jsonb       NOT NULL DEFAULT '[]',
    error           jsonb,
    manifest        text,
    manifest_sha256 text,
    -- the Job stream's sequence reached (0 while queued)
    version         bigint      NOT NULL DEFAULT 0,
    queued_at       timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE INDEX read_jobs_account ON read_jobs (account_id, job_id DESC);
CREATE INDEX read_jobs_source ON read_jobs (source_id, job_id DESC);
