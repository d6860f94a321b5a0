-- The commit horizon counts only the transactions that can still append to the event log.
--
-- Before (migration 0130), every transaction of this database holding a transaction id held every reader of
-- the log back for as long as it ran: the record index merging a backup, a retention sweep, a worker staging
-- an index batch. Under a load of backups the readers were held back almost all the time, and commands,
-- which wait for the projector to show their change (read-your-writes), took seconds (bench/load: 1.8 s at
-- the median while the service used a third of a core).
--
-- The rule that makes a narrower horizon safe: a transaction appends to `events` before it writes anything
-- else, so it holds the log's append lock (ROW EXCLUSIVE on `events`, taken when its first INSERT is
-- planned) before it has a transaction id at all. The trigger `events_append_first` enforces it: an INSERT
-- into `events` by a transaction that already holds a transaction id and has not appended before is
-- refused. Every append of the service is a transaction of its own (postgres-es commits a command's events
-- alone), so nothing of ours breaks the rule.
--
-- Given the rule, a transaction listed running in the reader's snapshot (pg_snapshot_xip) can have appended,
-- or still append, only if it holds the append lock when pg_locks is read, or it ended after the snapshot
-- was taken (its rows, if any, are invisible to the reader's statement). Both are counted; every other one
-- is still running without the lock and, already holding an id, can never append: it is left out. pg_locks
-- is read live, not from the snapshot, so it is read first and each left-out transaction's status after it
-- (pg_xact_status): one that ended in between is counted. A transaction that takes its id after the
-- snapshot has an id at or above the snapshot's xmax, so it is above the horizon anyway.
--
-- STABLE, so the statements inside see the snapshot of the query that calls it (the reader's). Transaction
-- ids in pg_locks are 32-bit (`xid`); the snapshot's are 64-bit (`xid8`): compared on their low 32 bits.

CREATE FUNCTION events_append_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

CREATE TRIGGER events_append_first
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_first();

CREATE OR REPLACE FUNCTION events_commit_horizon() RETURNS xid8 LANGUAGE plpgsql STABLE AS $$
DECLARE
    snapshot  pg_snapshot := pg_current_snapshot();
    horizon   xid8 := pg_snapshot_xmax(pg_current_snapshot());
    appending text[];
    running   xid8;
BEGIN
    -- 1. The transactions holding the append lock now (with their own transaction id lock: one row each).
    SELECT coalesce(array_agg(own.transactionid::text), '{}')
      INTO appending
      FROM pg_locks log
      JOIN pg_locks own ON own.virtualtransaction = log.virtualtransaction
                       AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
     WHERE log.locktype = 'relation'
       AND log.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND log.relation = 'events'::regclass
       AND log.mode = 'RowExclusiveLock'
       AND log.granted;
    -- 2. The oldest running transaction of the snapshot that holds it or has ended since (read after 1).
    FOR running IN SELECT x FROM pg_snapshot_xip(snapshot) AS x ORDER BY x LOOP
        IF (running::text::numeric % 4294967296)::bigint::text = ANY (appending)
           OR pg_xact_status(running) IS DISTINCT FROM 'in progress' THEN
            RETURN least(running, horizon);
        END IF;
    END LOOP;
    RETURN horizon;
END;
$$;
