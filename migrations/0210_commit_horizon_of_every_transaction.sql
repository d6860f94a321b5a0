-- The log readers' commit horizon goes back to migration 0130's: the oldest transaction of this database still
-- running, whatever it wrote (transactions of other databases cannot append here and still do not count).
--
-- Why: migration 0200 counted only the running transactions that held the append lock on `events` (read from
-- pg_locks) or had ended since the snapshot. Under load it let readers pass transactions that had appended and
-- not yet committed, and their events were never read: bench/post-connections (32 clients, about 630 commands a
-- second) lost 1 to 4 `ConnectionCreated` a run from the read model, in the log but never projected (4 of 14,587
-- in the run whose database was kept). With this horizon two runs of the same load (28,851 commands) lost none
-- and answered every request. A reader that waits for a long transaction writing elsewhere is slow; one that
-- skips an event loses it for good, so the exact rule wins until an appenders-only rule is proven safe.
--
-- The `events_append_first` trigger of 0200 stays: appending before any other write remains the rule, so a
-- future horizon of appenders only can rely on it.
CREATE OR REPLACE FUNCTION events_commit_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
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
