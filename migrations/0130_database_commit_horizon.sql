-- The commit horizon of this database's event log: the oldest transaction still running that could append to
-- `events` here. Every reader of the log (projector, relay, sagas, the log listener, audit reads, rebuilds)
-- reads below it, so that an event committed late is never skipped.
--
-- `pg_snapshot_xmin(pg_current_snapshot())`, used before, is the whole server's: a long transaction in any
-- other database of the server (another application, a migration, a test, a benchmark) held back every
-- reader of this log for as long as it ran, and commands waiting to read their own writes answered 503.
-- Transaction ids are the server's, never reused: one that pg_stat_activity shows running in another database
-- cannot append here, and is left out. Any transaction it cannot place still counts (one that took its id
-- after the activity was read, a prepared transaction), so the horizon never passes one that could append
-- here. pg_stat_activity shows `datid` and `backend_xid` of every session to every role.
CREATE FUNCTION events_commit_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    WITH snapshot AS (SELECT pg_current_snapshot() AS s),
         elsewhere AS (
             SELECT backend_xid::text AS xid FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL
               AND datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database()))
    SELECT coalesce(
        (SELECT min(x) FROM snapshot, pg_snapshot_xip(snapshot.s) AS x
         -- the 32-bit xid of a 64-bit xid8: its low 32 bits
         WHERE (x::text::numeric % 4294967296)::bigint::text NOT IN (SELECT xid FROM elsewhere)),
        (SELECT pg_snapshot_xmax(s) FROM snapshot))
$$;
