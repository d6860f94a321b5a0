-- Sources and source groups (issue 4): read models built by the projector, and an index for the membership
-- saga. Every read-model column derives from events (times from `recorded_at`); `nextSyncAt` is computed at
-- query time from the stored schedule, so a rebuild reproduces these tables exactly.
CREATE TABLE read_sources (
    source_id      text        PRIMARY KEY,
    account_id     text        NOT NULL,
    connection_id  text        NOT NULL,
    platform_id    text        NOT NULL,
    name           text        NOT NULL,
    -- active | paused | deleted (deleted rows stay for read-your-writes and history, hidden from every view)
    status         text        NOT NULL,
    data_types     jsonb       NOT NULL,
    schedule       jsonb       NOT NULL,
    retention_days integer     NOT NULL,
    incremental    boolean     NOT NULL,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Lists are per account, newest first (UUID v7 ids), optionally by status; the partial index serves
-- unfiltered lists, the status one `?status=`.
CREATE INDEX read_sources_account ON read_sources (account_id, source_id DESC) WHERE status <> 'deleted';
CREATE INDEX read_sources_account_status ON read_sources (account_id, status, source_id DESC);
CREATE INDEX read_sources_connection ON read_sources (connection_id) WHERE status <> 'deleted';

CREATE TABLE read_source_groups (
    group_id    text        PRIMARY KEY,
    account_id  text        NOT NULL,
    name        text        NOT NULL,
    description text,
    status      text        NOT NULL,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX read_source_groups_account ON read_source_groups (account_id, group_id DESC) WHERE status <> 'deleted';

CREATE TABLE read_source_group_members (
    group_id   text        NOT NULL,
    source_id  text        NOT NULL,
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (group_id, source_id)
);

CREATE INDEX read_source_group_members_source ON read_source_group_members (source_id);

-- The membership saga asks the log (not a read model, which may lag) which groups a deleted source was ever
-- added to. `payload` is json; the expression is indexed for that one event type only.
CREATE INDEX events_source_added_to_group
    ON events ((payload -> 'SourceAddedToGroup' ->> 'sourceId'))
    WHERE aggregate_type = 'source_group' AND event_type = 'SourceAddedToGroup';

-- …and which sources were ever created on a deleted connection.
CREATE INDEX events_source_created_connection
    ON events ((payload -> 'SourceCreated' ->> 'connectionId'))
    WHERE aggregate_type = 'source' AND event_type = 'SourceCreated';
