-- Backups running now (issue 9), one row per job, written by the worker process running it. Two rules read it:
--   a connection's backups run in one worker process at a time, at most LISTBACKUP_WORKER_CONNECTION_CONCURRENCY
--   there, so that process's rate budget is the connection's only one (a lease per connection);
--   a worker picks the waiting backup of the account with the fewest running (fairness between accounts).
-- A row lives while its process renews `expires_at` (every third of the ack wait); a killed process's rows
-- expire after one ack wait, when JetStream redelivers its messages. Keys are the backup queue's subject tokens.
CREATE TABLE backup_runs (
    job_id         text        PRIMARY KEY,
    account_key    text        NOT NULL,
    connection_key text        NOT NULL,
    -- the worker process (not the run: a run's identity is the Job's `worker`)
    worker_id      text        NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);

CREATE INDEX backup_runs_connection ON backup_runs (connection_key);
CREATE INDEX backup_runs_worker ON backup_runs (worker_id);
