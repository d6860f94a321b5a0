-- Appends through the service's event store no longer notify inside the appending transaction (issue 11:
-- `POST /connections` next to the postgres-es reference demo).
--
-- Why: PostgreSQL serializes the commits of every transaction that has called NOTIFY, cluster-wide, for
-- the whole commit including its WAL flush (PreCommit_Notify takes a lock held until the transaction has
-- ended, so that queue entries appear in commit order). With 0020's trigger every event append was such a
-- transaction: concurrent commands could not share a WAL flush, and throughput fell to one commit per
-- flush (pgbench, 8 clients, one event INSERT each: 252-295 tx/s with the trigger against 605-832 without,
-- on the shared 2-core machine; docs/benchmarks.md).
--
-- Instead, a session that says its process announces its commits itself, after they are done
-- (`listbackup.notify_after_commit = on`, set by the service's event store pool at connection start),
-- skips the NOTIFY; that process then sends one `NOTIFY` in a transaction of its own after one or more
-- commits (projections/src/log_signal.rs, `announce`), whose transaction id is newer than theirs, so a
-- listener's wait for the commit horizon still covers them. Every other writer (psql, tools, tests) notifies
-- inside its transaction as before: no append goes unannounced.
CREATE OR REPLACE FUNCTION listbackup_notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('listbackup.notify_after_commit', true), '') <> 'on' THEN
        PERFORM pg_notify('listbackup_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$$;
