//! Reading the event log in commit-safe order.
//!
//! `global_position` is handed out when a row is inserted, not when its transaction commits, so a writer
//! that commits late can make position 41 appear after a reader has already moved past 42. Readers
//! therefore order by `(transaction_id, global_position)` and only read transactions older than the oldest
//! one still running that could append here (`events_commit_horizon()`, migrations 0130, 0210 and 0220):
//! everything below that horizon is final, so nothing can appear behind the cursor later.
//!
//! "Could append" is every running transaction of this database (migration 0210: a guess from the locks it
//! held let events be skipped under load, migration 0200), except those of sessions that never append
//! (migration 0220): a session connected with the application name [`NEVER_APPENDS`] is refused every append
//! by the database, so its long transactions (the record indexer merging a million-record backup, the
//! retention sweep moving versions) do not hold the readers, and the commands waiting on them for
//! read-your-writes, back. Transactions of other databases of the server never hold it.

/// The `application_name` of sessions that never append to the event log (migration 0220): the database
/// refuses their appends, and the log readers do not wait for their transactions. Open long-running work that
/// writes other tables on such sessions ([`never_appending`]).
pub const NEVER_APPENDS: &str = "listbackup-never-appends";

/// `config` for sessions that never append: with the application name [`NEVER_APPENDS`].
pub fn never_appending(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    config.application_name(NEVER_APPENDS);
    config
}

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::statements;
use crate::ReadError;

/// A reader's place in the log: the last event it has handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub transaction_id: u64,
    pub global_position: i64,
}

/// The event store's upcasters (the domain's), which every reader of the log applies.
pub(crate) fn upcasters() -> &'static [Box<dyn EventUpcaster>] {
    static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> =
        LazyLock::new(listbackup_domain::upcasting::upcasters);
    &UPCASTERS
}

/// One event as stored, with its place in the log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// cqrs-es's serialization: `{"<EventType>": {...fields}}`.
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The event's own fields (the payload without cqrs-es's enum tag).
    pub fn body(&self) -> &Value {
        self.payload.get(&self.event_type).unwrap_or(&Value::Null)
    }

    /// Deserializes the payload into an aggregate's event enum.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ReadError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| ReadError::BadEvent {
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            source: e.into(),
        })
    }

    /// Reads a row of `SELECT_COLUMNS` through the domain's upcasters (an event stored at an older version
    /// comes out in its current shape, as the command bus loads it).
    pub(crate) fn from_row(row: &Row) -> Result<Self, ReadError> {
        Ok(Self::from_row_as_stored(row)?.upcast_with(upcasters()))
    }

    /// The event through `upcasters`: payload, type and version as the current code expects them.
    pub fn upcast_with(self, upcasters: &[Box<dyn EventUpcaster>]) -> Self {
        if !upcasters
            .iter()
            .any(|u| u.can_upcast(&self.event_type, &self.event_version))
        {
            return self;
        }
        let serialized = SerializedEvent {
            aggregate_id: self.aggregate_id,
            sequence: self.sequence as usize,
            aggregate_type: self.aggregate_type,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
        };
        let upcasted = listbackup_domain::upcasting::upcast(upcasters, serialized);
        Self {
            aggregate_id: upcasted.aggregate_id,
            sequence: upcasted.sequence as i64,
            aggregate_type: upcasted.aggregate_type,
            event_type: upcasted.event_type,
            event_version: upcasted.event_version,
            payload: upcasted.payload,
            metadata: upcasted.metadata,
            ..self
        }
    }

    fn from_row_as_stored(row: &Row) -> Result<Self, ReadError> {
        let txid: String = row.get("txid");
        Ok(Self {
            position: LogPosition {
                // xid8 has no binary mapping in tokio-postgres; it travels as text.
                transaction_id: txid.parse().unwrap_or_default(),
                global_position: row.get("global_position"),
            },
            event_id: row.get("event_id"),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            sequence: row.get("sequence"),
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
            recorded_at: row.get("recorded_at"),
        })
    }
}

pub(crate) const SELECT_COLUMNS: &str =
    "global_position, transaction_id::text AS txid, event_id, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// The next events after `after`, in log order, only from transactions that can no longer change: below
/// the commit horizon, or below `floor` when that is higher (a horizon read earlier by this reader's log
/// listener, [`crate::LogWake::horizon_floor`]; 0 for none).
pub async fn read_after(
    client: &impl GenericClient,
    after: LogPosition,
    limit: i64,
    floor: u64,
) -> Result<Vec<StoredEvent>, ReadError> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < (SELECT greatest($4::text::xid8, events_commit_horizon())) \
         ORDER BY transaction_id, global_position \
         LIMIT $3"
    );
    let rows = statements::query(
        client,
        &sql,
        &[
            &after.transaction_id.to_string(),
            &after.global_position,
            &limit,
            &floor.to_string(),
        ],
    )
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Makes sure the checkpoint row `name` exists (at the start of the log when new) and returns where it
/// stands. A reader calls it once when it starts (or takes the lead), not before every read.
pub async fn ensure_checkpoint(
    client: &impl GenericClient,
    name: &str,
) -> Result<LogPosition, ReadError> {
    statements::execute(
        client,
        "INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    let row = statements::query_one(
        client,
        "SELECT transaction_id::text AS txid, position FROM checkpoints WHERE name = $1",
        &[&name],
    )
    .await?;
    Ok(checkpoint_position(&row, "txid", "position"))
}

/// Reads a named checkpoint, locking its row for the rest of the transaction so two processes never
/// advance the same reader at once. Creates the row at the start of the log on first use.
pub async fn lock_checkpoint(
    client: &impl GenericClient,
    name: &str,
) -> Result<LogPosition, ReadError> {
    statements::execute(
        client,
        "INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    let row = statements::query_one(
        client,
        "SELECT transaction_id::text AS txid, position FROM checkpoints WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?;
    Ok(checkpoint_position(&row, "txid", "position"))
}

/// A batch read after a checkpoint ([`read_after_checkpoint`]).
#[derive(Debug)]
pub struct CheckpointBatch {
    /// Where the checkpoint stood: the batch is the events after it.
    pub from: LogPosition,
    /// The events after `from`, in log order, below `horizon`; at most the limit asked for.
    pub events: Vec<StoredEvent>,
    /// The commit horizon the batch was read below (a transaction id, [`read_after`]): when the batch is not
    /// full, no other event after `from` below it exists or ever will.
    pub horizon: u64,
}

/// The events after checkpoint `name` (as [`read_after`], `floor` likewise), read with the checkpoint and
/// the horizon they were read below in one statement (`None` when the row does not exist). Takes no lock: a
/// reader that several processes run moves the checkpoint with [`advance_checkpoint`], which refuses if
/// another one moved it meanwhile. The row must exist ([`ensure_checkpoint`]).
pub async fn read_after_checkpoint(
    client: &impl GenericClient,
    name: &str,
    limit: i64,
    floor: u64,
) -> Result<Option<CheckpointBatch>, ReadError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH h AS (SELECT greatest($3::text::xid8, events_commit_horizon()) AS horizon) \
             SELECT h.horizon::text AS horizon, c.transaction_id::text AS from_txid, \
                    c.position AS from_position, e.* \
             FROM h CROSS JOIN checkpoints c LEFT JOIN LATERAL ( \
               SELECT {SELECT_COLUMNS} FROM events \
               WHERE (transaction_id, global_position) > (c.transaction_id, c.position) \
                 AND transaction_id < h.horizon \
               ORDER BY transaction_id, global_position \
               LIMIT $2) e ON true \
             WHERE c.name = $1"
        )
    });
    let rows = statements::query(client, &SQL, &[&name, &limit, &floor.to_string()]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let from = checkpoint_position(first, "from_txid", "from_position");
    let horizon = first
        .get::<_, String>("horizon")
        .parse()
        .unwrap_or_default();
    // With no event after the checkpoint, the one row carries the checkpoint and NULL event columns.
    let events = rows
        .iter()
        .filter(|row| row.get::<_, Option<i64>>("global_position").is_some())
        .map(StoredEvent::from_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(CheckpointBatch {
        from,
        events,
        horizon,
    }))
}

/// Moves checkpoint `name` from `from` to `to`, only if it still stands at `from` (compare and set: the
/// row lock it takes is held to the end of the caller's transaction). `false` when another reader of the
/// same name moved it first: the caller's batch is someone else's work and must not be applied.
///
/// With [`Commit::Asynchronous`] the statement also makes the enclosing transaction's commit skip its WAL
/// flush (`set_config('synchronous_commit', 'off', true)`, PostgreSQL's `SET LOCAL` as a function): for a
/// reader whose work is derived from the log and simply redone if a crash loses it.
pub async fn advance_checkpoint(
    client: &impl GenericClient,
    name: &str,
    from: LogPosition,
    to: LogPosition,
    commit: Commit,
) -> Result<bool, ReadError> {
    let sql = match commit {
        Commit::Synchronous => {
            "UPDATE checkpoints SET transaction_id = $4::text::xid8, position = $5 \
             WHERE name = $1 AND transaction_id = $2::text::xid8 AND position = $3"
        }
        Commit::Asynchronous => {
            "UPDATE checkpoints SET transaction_id = $4::text::xid8, position = $5 \
             FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit \
             WHERE name = $1 AND transaction_id = $2::text::xid8 AND position = $3"
        }
    };
    let moved = statements::execute(
        client,
        sql,
        &[
            &name,
            &from.transaction_id.to_string(),
            &from.global_position,
            &to.transaction_id.to_string(),
            &to.global_position,
        ],
    )
    .await?;
    Ok(moved == 1)
}

/// Whether a transaction's commit waits for its WAL flush (PostgreSQL's `synchronous_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The server's setting (on): the commit is on disk when it returns.
    Synchronous,
    /// `synchronous_commit = off` for this transaction only: a crash may lose the last few hundred
    /// milliseconds of such commits, never corrupt anything.
    Asynchronous,
}

/// Sets a checkpoint unconditionally (the caller holds its row lock: [`lock_checkpoint`]).
pub async fn save_checkpoint(
    client: &impl GenericClient,
    name: &str,
    at: LogPosition,
) -> Result<(), ReadError> {
    statements::execute(
        client,
        "UPDATE checkpoints SET transaction_id = $2::text::xid8, position = $3 WHERE name = $1",
        &[&name, &at.transaction_id.to_string(), &at.global_position],
    )
    .await?;
    Ok(())
}

fn checkpoint_position(row: &Row, transaction_id: &str, position: &str) -> LogPosition {
    let txid: String = row.get(transaction_id);
    LogPosition {
        // xid8 has no binary mapping in tokio-postgres; it travels as text.
        transaction_id: txid.parse().unwrap_or_default(),
        global_position: row.get(position),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_domain::connection::ConnectionEvent;
    use serde_json::json;

    /// ConnectionRenamed as a hypothetical 0.9 stored it: `title` instead of `name`.
    struct TitleToName;

    impl EventUpcaster for TitleToName {
        fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
            event_type == "ConnectionRenamed" && event_version == "0.9"
        }

        fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
            let title = event.payload["ConnectionRenamed"]["title"].take();
            event.payload = json!({"ConnectionRenamed": {"name": title}});
            event.event_version = "1.0".into();
            event
        }
    }

    fn stored(version: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            position: LogPosition::default(),
            event_id: Uuid::nil(),
            aggregate_type: "connection".into(),
            aggregate_id: "c1".into(),
            sequence: 2,
            event_type: "ConnectionRenamed".into(),
            event_version: version.into(),
            payload,
            metadata: json!({}),
            recorded_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_event_stored_at_an_older_version_decodes_through_the_upcasters() {
        let upcasters: Vec<Box<dyn EventUpcaster>> = vec![Box::new(TitleToName)];
        let old = stored("0.9", json!({"ConnectionRenamed": {"title": "Stripe"}}));
        assert!(
            old.decode::<ConnectionEvent>().is_err(),
            "the old shape alone does not decode"
        );
        let upcasted = old.upcast_with(&upcasters);
        assert_eq!(upcasted.event_version, "1.0");
        assert!(matches!(
            upcasted.decode::<ConnectionEvent>().unwrap(),
            ConnectionEvent::ConnectionRenamed { name } if name == "Stripe"
        ));
        // An event at the current version passes untouched.
        let current = stored("1.0", json!({"ConnectionRenamed": {"name": "Kept"}}));
        assert_eq!(
            current.clone().upcast_with(&upcasters).payload,
            current.payload
        );
    }
}
