//! `listbackup projections rebuild` without a gap: fresh read-model tables are built beside the live ones,
//! which keep serving (and the live projector keeps updating) until the new ones have caught up; then one
//! short transaction swaps them in.
//!
//! 1. Shadow tables: `listbackup_rebuild.<table>` for each read-model table, `LIKE` the live one, with its
//!    primary and unique keys under their own names (the projector's upserts need them).
//! 2. Fold, in memory: the log below the commit horizon is read in log order as one `COPY … TO STDOUT (FORMAT
//!    binary)` stream and folded by the read models' own fold ([`Rows::fold`], the one the live projector
//!    uses) into one row per aggregate held in memory — connections, sources, groups with their members,
//!    jobs — never the log itself: memory grows with the number of aggregates, not of events. Each event
//!    goes through the event store's upcasters (only those an upcaster claims are parsed into a JSON tree
//!    first; the others are decoded straight from the stream's bytes).
//! 3. Write: the final rows go into the shadow tables in bulk (thousands of rows per statement), once.
//! 4. Indexes: the live tables' other indexes are created on the shadow tables once they are full (faster
//!    than maintaining them row by row), under the same names.
//! 5. Swap, in one transaction: lock the projector's checkpoint row (waiting for a live batch to commit),
//!    then the live tables; apply the tail of the log that arrived meanwhile to the shadow tables (as the
//!    live projector applies a batch, [`read_models::apply_batch`]); move the live tables out to
//!    `listbackup_retired` and the shadow tables in; set the checkpoint to where the fold got. Readers wait
//!    for the lock at most as long as the tail takes, then see the new tables, complete: there is no moment
//!    when a list is empty or behind. Prepared statements that named the old tables are re-planned by
//!    PostgreSQL on their next use (moving a table invalidates plans that depend on it).
//! 6. The retired tables are dropped.

use deadpool_postgres::{ClientWrapper, Pool};
use futures::TryStreamExt;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::{FromSql, Type};

use crate::event_log::{lock_checkpoint, read_after, save_checkpoint, upcasters};
use crate::projector::CHECKPOINT;
use crate::read_models::{self, Decoded, Header, Metadata, Rows, TABLES};
use crate::{LogPosition, ReadError, StoredEvent};

/// Events per batch of the tail applied during the swap.
const BATCH: i64 = 5000;

/// The schema fresh read models are built in.
pub const SHADOW_SCHEMA: &str = "listbackup_rebuild";
/// Where replaced read models go until they are dropped.
pub const RETIRED_SCHEMA: &str = "listbackup_retired";
/// Names the rebuild among advisory locks: one rebuild at a time.
const REBUILD_LOCK: i64 = 0x4c42_5245_4255; // "LBREBU"

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events folded into the new tables (all of the log below the commit horizon at the swap).
    pub events: usize,
    /// Of which during the swap (the tail that arrived while building).
    pub tail: usize,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Runs a rebuild on a connection taken out of `pool` for good (its session settings must not leak back).
pub async fn rebuild(pool: &Pool) -> Result<Rebuilt, ReadError> {
    let mut client: ClientWrapper = deadpool_postgres::Object::take(pool.get().await?);
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    // The session ends with the connection, and the advisory lock with it.
    run(&mut client).await
}

/// Points a connection's unqualified table names at the shadow tables.
async fn use_shadow(client: &mut ClientWrapper, live: &str) -> Result<(), ReadError> {
    client
        .batch_execute(&format!(
            "SET search_path = {SHADOW_SCHEMA}, {live}; SET synchronous_commit = off"
        ))
        .await?;
    client.statement_cache.clear();
    Ok(())
}

async fn run(client: &mut ClientWrapper) -> Result<Rebuilt, ReadError> {
    let live_schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await?
        .get(0);
    let live = quote(&live_schema);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE; \
             CREATE SCHEMA {SHADOW_SCHEMA}"
        ))
        .await?;
    let mut deferred_indexes = Vec::new();
    for table in TABLES {
        client
            .batch_execute(&format!(
                // Unlogged while it is built (no WAL for every row written); logged before it is swapped in.
                "CREATE UNLOGGED TABLE {SHADOW_SCHEMA}.{table} \
                 (LIKE {live}.{table} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .await?;
        let qualified = format!("{live}.{table}");
        for row in client
            .query(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname",
                &[&qualified],
            )
            .await?
        {
            let (name, definition): (String, String) = (row.get(0), row.get(1));
            client
                .batch_execute(&format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} ADD CONSTRAINT {} {definition}",
                    quote(&name)
                ))
                .await?;
        }
        for row in client
            .query(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = $1::text::regclass \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
                &[&qualified],
            )
            .await?
        {
            let definition: String = row.get(0);
            // `CREATE INDEX name ON schema.table USING …`: the same index on the shadow table.
            let on_live = format!(" ON {live_schema}.{table} ");
            let on_live_quoted = format!(" ON {live}.{table} ");
            let on_shadow = format!(" ON {SHADOW_SCHEMA}.{table} ");
            deferred_indexes.push(
                definition
                    .replacen(&on_live_quoted, &on_shadow, 1)
                    .replacen(&on_live, &on_shadow, 1),
            );
        }
    }

    let mut rows = Rows::default();
    let (mut at, events) = fold_log(client, &mut rows).await?;

    // The read models' statements name tables unqualified: on this connection they find the shadow ones.
    use_shadow(client, &live).await?;
    let tx = client.transaction().await?;
    read_models::write_all(&tx, &rows).await?;
    tx.commit().await?;
    drop(rows);
    for table in TABLES {
        client
            .batch_execute(&format!("ALTER TABLE {SHADOW_SCHEMA}.{table} SET LOGGED"))
            .await?;
    }
    for index in &deferred_indexes {
        client.batch_execute(index).await?;
    }
    for table in TABLES {
        client
            .batch_execute(&format!("ANALYZE {SHADOW_SCHEMA}.{table}"))
            .await?;
    }

    // The swap. The checkpoint row first, as the live projector takes it first: no deadlock with it.
    let tx = client.transaction().await?;
    lock_checkpoint(&tx, CHECKPOINT).await?;
    let live_tables: Vec<String> = TABLES.iter().map(|t| format!("{live}.{t}")).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        live_tables.join(", ")
    ))
    .await?;
    let mut tail = 0;
    loop {
        let batch = read_after(&tx, at, BATCH, 0).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        read_models::apply_batch(&tx, &batch).await?;
        tail += batch.len();
        at = last;
    }
    save_checkpoint(&tx, CHECKPOINT, at).await?;
    tx.batch_execute(&format!("CREATE SCHEMA {RETIRED_SCHEMA}"))
        .await?;
    for table in TABLES {
        tx.batch_execute(&format!(
            "ALTER TABLE {live}.{table} SET SCHEMA {RETIRED_SCHEMA}; \
             ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {live}"
        ))
        .await?;
    }
    tx.commit().await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA {RETIRED_SCHEMA} CASCADE; DROP SCHEMA {SHADOW_SCHEMA} CASCADE"
        ))
        .await?;
    Ok(Rebuilt {
        events: events + tail,
        tail,
    })
}

/// A `json` (or `jsonb`) value as it comes off the wire: its JSON text, not parsed yet.
struct JsonText<'a>(&'a [u8]);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSON {
            return Ok(Self(raw));
        }
        // jsonb's binary format: a version byte (1), then the JSON text.
        match raw.split_first() {
            Some((1, text)) => Ok(Self(text)),
            _ => Err("unsupported jsonb binary format version".into()),
        }
    }

    tokio_postgres::types::accepts!(JSON, JSONB);
}

/// The columns [`fold_log`] reads, in order.
const LOG_COLUMNS: &[Type] = &[
    Type::INT8,
    Type::TEXT,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    // `events.payload` and `metadata` are `json` (postgres-es's columns).
    Type::JSON,
    Type::JSON,
    Type::TIMESTAMPTZ,
];

/// Folds the whole log below the commit horizon into `rows`, in log order, read as one binary `COPY`
/// stream. Returns where it got and how many events it folded.
async fn fold_log(
    client: &ClientWrapper,
    rows: &mut Rows,
) -> Result<(LogPosition, usize), ReadError> {
    let stream = client
        .copy_out(
            "COPY (SELECT global_position, transaction_id::text, event_id, aggregate_type, aggregate_id, \
               sequence, event_type, event_version, payload, metadata, recorded_at FROM events \
             WHERE transaction_id < (SELECT events_commit_horizon()) \
             ORDER BY transaction_id, global_position) TO STDOUT (FORMAT binary)",
        )
        .await?;
    let stream = BinaryCopyOutStream::new(stream, LOG_COLUMNS);
    futures::pin_mut!(stream);
    let upcasters = upcasters();
    let mut at = LogPosition::default();
    let mut events = 0;
    while let Some(row) = stream.try_next().await? {
        let txid: &str = row.try_get(1)?;
        at = LogPosition {
            transaction_id: txid.parse().unwrap_or_default(),
            global_position: row.try_get(0)?,
        };
        events += 1;
        let aggregate_type: &str = row.try_get(3)?;
        let event_type: &str = row.try_get(6)?;
        let event_version: &str = row.try_get(7)?;
        let payload: JsonText<'_> = row.try_get(8)?;
        let metadata: JsonText<'_> = row.try_get(9)?;
        let bad = |err: serde_json::Error| ReadError::BadEvent {
            event_id: row.try_get(2).unwrap_or_default(),
            event_type: event_type.to_owned(),
            source: err.into(),
        };
        if upcasters
            .iter()
            .any(|u| u.can_upcast(event_type, event_version))
        {
            // Stored at an older version: the event as the current code expects it, as the projector reads it.
            let stored = StoredEvent {
                position: at,
                event_id: row.try_get(2)?,
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: row.try_get::<&str>(4)?.to_owned(),
                sequence: row.try_get(5)?,
                event_type: event_type.to_owned(),
                event_version: event_version.to_owned(),
                payload: serde_json::from_slice(payload.0).map_err(bad)?,
                metadata: serde_json::from_slice(metadata.0).map_err(bad)?,
                recorded_at: row.try_get(10)?,
            }
            .upcast_with(upcasters);
            rows.fold_stored(&stored)?;
            continue;
        }
        let decoded = Decoded::from_json(
            aggregate_type,
            &mut serde_json::Deserializer::from_slice(payload.0),
        )
        .map_err(bad)?;
        if matches!(decoded, Decoded::Other) {
            continue;
        }
        rows.fold(
            &Header {
                aggregate_id: row.try_get(4)?,
                sequence: row.try_get(5)?,
                recorded_at: row.try_get(10)?,
                metadata: Metadata::Text(metadata.0),
            },
            decoded,
        );
    }
    Ok((at, events))
}
