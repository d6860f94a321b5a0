-- The commit horizon of migration 0220, computed the same way, at a fraction of the cost.
--
-- Why: 0220's `events_commit_horizon()` is a LANGUAGE sql function that PostgreSQL cannot inline (its body
-- has CTEs), so every call planned its body afresh (the `pg_stat_activity` view and its joins included):
-- about 0.4 ms a call, paid by the projector on every batch and by the log listener on every poll. Under a
-- stream of commands that was the largest statement the service sent after the append itself (issue 11 §3,
-- bench/post-connections, pg_stat_statements). PL/pgSQL keeps its statements' plans for the session, and the
-- backend table is read through `pg_stat_get_activity(NULL)` (what the view reads) without the view's joins.
--
-- The result is unchanged: the oldest transaction of the caller's snapshot still running, leaving out the
-- transactions of other databases (they cannot append here) and of this database's sessions that never append
-- (migration 0220); the snapshot's xmax when there is none. STABLE, as before: the body runs with the calling
-- statement's snapshot (`pg_current_snapshot()` is that snapshot), so a reader's `transaction_id < horizon`
-- and the horizon see the same transactions. When the snapshot holds no running transaction at all, the
-- backend table is not read.

CREATE OR REPLACE FUNCTION events_commit_horizon() RETURNS xid8 LANGUAGE plpgsql STABLE AS $$
DECLARE
    snapshot pg_snapshot := pg_current_snapshot();
    horizon  xid8;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_snapshot_xip(snapshot)) THEN
        RETURN pg_snapshot_xmax(snapshot);
    END IF;
    SELECT min(x) INTO horizon
      FROM pg_snapshot_xip(snapshot) AS x
     -- the 32-bit xid of a 64-bit xid8: its low 32 bits
     WHERE (x::text::numeric % 4294967296)::bigint::text NOT IN (
               SELECT a.backend_xid::text FROM pg_stat_get_activity(NULL::integer) AS a
                WHERE a.backend_xid IS NOT NULL
                  AND (a.datid IS DISTINCT FROM (SELECT oid FROM pg_database
                                                  WHERE datname = current_database())
                       OR a.application_name = 'listbackup-never-appends'));
    RETURN coalesce(horizon, pg_snapshot_xmax(snapshot));
END;
$$;
