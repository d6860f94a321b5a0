-- Wakes the log's readers (projector, relay, sagas, scheduler) when events are committed, instead of each
-- polling the table several times a second (issue 11: an idle service should cost Postgres nearly nothing).
--
-- One notification per appending statement, on channel `listbackup_events`, with the appending
-- transaction's id as payload. PostgreSQL delivers it only when that transaction commits (never for a
-- rolled-back one) and folds identical notifications of one transaction into one. A listener knows the
-- events of transaction T are readable in log order once `pg_snapshot_xmin(pg_current_snapshot()) > T`
-- (projections/src/event_log.rs), and waits for that before waking the readers.
CREATE FUNCTION listbackup_notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('listbackup_events', pg_current_xact_id()::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT
    EXECUTE FUNCTION listbackup_notify_events();
