-- Sessions that never append to the event log, and whose transactions the log readers therefore pass.
--
-- Why: since migration 0210 every running transaction of this database holds the log readers back, so a long
-- one writing elsewhere (the record indexer merging a million-record backup: about 19 s) delays every
-- projection and with it every command's read-your-writes wait, past its 10 s deadline (503). Such work now
-- runs on sessions whose `application_name` is 'listbackup-never-appends' (the record indexer's and the
-- retention sweep's index pool): this migration refuses any append from such a session, and the horizon
-- leaves their transactions out. Unlike migration 0200's guess from pg_locks (which let events be skipped
-- under load), this is a promise the database enforces: a transaction of such a session can never write to
-- `events`, so passing it cannot skip an event. The session's name is fixed when it connects and those
-- sessions never change it, so reading the name and the transaction id of a backend at different instants
-- still pairs a transaction id with the name of a session that never appends.

CREATE OR REPLACE FUNCTION events_append_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'listbackup-never-appends' THEN
        RAISE EXCEPTION 'a session that never appends cannot append to the event log'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'its transactions are not waited for by the log readers (migration 0220)';
    END IF;
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        -- The first append of this transaction, before anything it wrote: later appends are allowed.
        PERFORM set_config('listbackup.appending', 'on', true);
    ELSIF current_setting('listbackup.appending', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'a transaction that wrote elsewhere first cannot append to the event log'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'append in a transaction of its own, or before any other write (migration 0200)';
    END IF;
    RETURN NULL;
END;
$$;

-- 0210's horizon (the oldest running transaction of the snapshot), leaving out the transactions of other
-- databases (they cannot append here) and of this database's sessions that never append.
CREATE OR REPLACE FUNCTION events_commit_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    WITH snapshot AS (SELECT pg_current_snapshot() AS s),
         never_appending AS (
             SELECT backend_xid::text AS xid FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL
               AND (datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database())
                    OR application_name = 'listbackup-never-appends'))
    SELECT coalesce(
        (SELECT min(x) FROM snapshot, pg_snapshot_xip(snapshot.s) AS x
         -- the 32-bit xid of a 64-bit xid8: its low 32 bits
         WHERE (x::text::numeric % 4294967296)::bigint::text NOT IN (SELECT xid FROM never_appending)),
        (SELECT pg_snapshot_xmax(s) FROM snapshot))
$$;
