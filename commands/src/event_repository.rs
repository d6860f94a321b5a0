//! The event store's repository: postgres-es's [`PostgresEventRepository`] for every read, and one statement
//! of our own for every append.
//!
//! postgres-es appends a commit's events as `BEGIN`, one `INSERT` per event, `COMMIT`: three round trips and
//! three statements for the usual one-event command. [`EventRepository::persist`] appends all of a commit's
//! events with one `INSERT … SELECT FROM unnest(…)` outside any explicit transaction. PostgreSQL runs a lone
//! statement as a transaction of its own, so the events are still committed all or none, and the log's
//! rules hold as before: the `events` triggers (hash chain, append-first rule, migrations 0010 and 0200/0220)
//! fire row by row, in the order of the arrays (`WITH ORDINALITY … ORDER BY`), each seeing the rows before
//! it; a sequence already taken violates the primary key and the commit is an optimistic-lock conflict, as
//! with postgres-es (SQLSTATE 23505).
//!
//! A use case whose event refers to a row of another table can have that row written by the same statement
//! ([`Companion`]): a connection's creation and its sealed secret are committed together or not at all.
//!
//! The event store runs without snapshots ([`cqrs_es::persist::PersistedEventStore::new_event_store`]); a
//! commit that carries a snapshot update goes to postgres-es unchanged.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

/// One statement for all of a commit's events. The arrays are in the commit's order; `ORDER BY n` keeps it,
/// so the rows (and their `global_position`s) follow the events' sequence.
const APPEND: &str = "INSERT INTO events \
     (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata \
     FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
          WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata, n) \
     ORDER BY e.n";

/// A row of another table written by the same statement as a commit's events, so committed with them or not
/// at all, and after them (it is inserted from the events' `RETURNING`, so PostgreSQL must append them first:
/// the log's append-first rule, migration 0200, holds): the sealed secret a `ConnectionCreated` refers to
/// ([`crate::vault::CredentialVault::seal_new`]).
#[derive(Debug)]
pub struct Companion {
    /// `INSERT INTO <table> (<columns>)`, the columns in the order of `values`.
    pub insert: &'static str,
    /// What follows the values (an `ON CONFLICT` clause), or empty.
    pub on_conflict: &'static str,
    pub values: Vec<CompanionValue>,
}

/// One value of a [`Companion`] row.
#[derive(Debug)]
pub enum CompanionValue {
    Text(String),
    Bytes(Vec<u8>),
}

impl Companion {
    /// The statement appending the events with this row: [`APPEND`]'s seven parameters, then the row's.
    fn statement(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, value)| match value {
                CompanionValue::Text(_) => format!("${}::text", i + 8),
                CompanionValue::Bytes(_) => format!("${}::bytea", i + 8),
            })
            .collect();
        format!(
            "WITH appended AS ({APPEND} RETURNING 1) {} SELECT {} WHERE EXISTS (SELECT FROM appended) {}",
            self.insert,
            values.join(", "),
            self.on_conflict
        )
    }
}

/// The repository [`crate::bus::CommandBus`] stores aggregates in (see the module's doc).
pub struct EventRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
}

impl EventRepository {
    /// A repository over the `events` table of `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    /// Appends `events` (all of one aggregate, of type `A`, in sequence order) as one statement, with
    /// `companion`'s row when there is one. A taken sequence is [`PersistenceError::OptimisticLockError`].
    pub async fn append<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        companion: Option<Companion>,
    ) -> Result<(), PersistenceError> {
        self.append_rows::<A>(events, companion)
            .await
            .map_err(persistence_error)
    }

    async fn append_rows<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        companion: Option<Companion>,
    ) -> Result<(), sqlx::Error> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for event in events {
            // A sequence past i64 cannot be stored: the primary key would refuse it anyway.
            sequences.push(i64::try_from(event.sequence).unwrap_or(i64::MAX));
            types.push(event.event_type.as_str());
            versions.push(event.event_version.as_str());
            payloads.push(&event.payload);
            metadata.push(&event.metadata);
        }
        let with_companion = companion.as_ref().map(Companion::statement);
        let mut query = sqlx::query(with_companion.as_deref().unwrap_or(APPEND))
            .bind(A::TYPE)
            .bind(first.aggregate_id.as_str())
            .bind(sequences)
            .bind(types)
            .bind(versions)
            .bind(payloads)
            .bind(metadata);
        for value in companion.into_iter().flat_map(|c| c.values) {
            query = match value {
                CompanionValue::Text(text) => query.bind(text),
                CompanionValue::Bytes(bytes) => query.bind(bytes),
            };
        }
        query.execute(&self.pool).await?;
        Ok(())
    }
}

/// postgres-es's reading of an append's failure: a taken key is a lost race, a broken connection is the
/// store being unreachable, anything else unexpected. The `sqlx::Error` stays the source, so the command
/// layer can still tell PostgreSQL's "not now" apart ([`crate::bus`]).
fn persistence_error(err: sqlx::Error) -> PersistenceError {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            PersistenceError::ConnectionError(Box::new(err))
        }
        _ => PersistenceError::UnknownError(Box::new(err)),
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match snapshot_update {
            None => self.append::<A>(events, None).await,
            Some(update) => self.reads.persist::<A>(events, Some(update)).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}
