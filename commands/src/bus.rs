//! Executes commands against aggregates stored in the Postgres event store (postgres-es, event-store mode).
//!
//! We drive cqrs-es's `EventStore` directly rather than through `CqrsFramework::execute` for two reasons:
//! the caller needs the committed sequence (it becomes the resource `version`, its `ETag`, and what
//! read-your-writes waits for), and `If-Match` must be checked against the very state the command is
//! decided on. Projections are not cqrs-es queries: they are catch-up readers of the log (DESIGN §2).

use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use listbackup_domain::{AccountOwned, DomainError, ErrorKind};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::metadata::EventMetadata;

/// The result of a command that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The aggregate's sequence after the command: its `version`.
    pub version: u64,
    /// How many events the command recorded (0 when it changed nothing).
    pub events: usize,
}

/// Why a command was not accepted, whatever the aggregate.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{message}")]
    Domain {
        kind: ErrorKind,
        field: Option<&'static str>,
        message: String,
    },
    /// `If-Match` named another version than the current one.
    #[error("the resource is at version {actual}, not {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    /// Another command on the same aggregate committed first; the caller may retry.
    #[error("the resource was changed concurrently; retry")]
    Concurrency,
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected event store failure: {0}")]
    Store(String),
}

impl CommandError {
    pub fn not_found() -> Self {
        Self::Domain {
            kind: ErrorKind::NotFound,
            field: None,
            message: "not found".into(),
        }
    }
}

impl<E: DomainError> From<AggregateError<E>> for CommandError {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Domain {
                kind: e.kind(),
                field: e.field(),
                message: e.to_string(),
            },
            AggregateError::AggregateConflict => Self::Concurrency,
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e.to_string()),
            // postgres-es files a pool that timed out (every connection busy) among its unknown errors: it is
            // the database being unavailable for now, not a bug.
            AggregateError::UnexpectedError(e) if is_unavailable(e.as_ref()) => {
                Self::Unavailable(e.to_string())
            }
            AggregateError::DeserializationError(e) | AggregateError::UnexpectedError(e) => {
                Self::Store(e.to_string())
            }
        }
    }
}

/// Whether an error of the event store's driver means the database cannot be reached or used right now (the
/// pool exhausted or closed, the connection broken): a 503 to retry, not a 500.
fn is_unavailable(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match err.downcast_ref::<sqlx::Error>() {
        Some(
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed,
        ) => true,
        // SQLSTATE classes 08 (connection exception) and 53 (insufficient resources: "too many clients"),
        // and 57P01–57P03 (the server shutting down or starting): PostgreSQL's own "not now".
        Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
        }),
        _ => false,
    }
}

/// Loads, decides and appends for one aggregate type.
pub struct CommandBus<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
    /// Woken after every commit so an in-process projector picks the events up at once instead of at its
    /// next poll. Other processes' projectors still find them by polling.
    committed: Arc<Notify>,
}

impl<A> CommandBus<A>
where
    A: Aggregate + AccountOwned,
    A::Error: DomainError,
{
    pub fn new(pool: PgPool, services: A::Services, committed: Arc<Notify>) -> Self {
        let repo = PostgresEventRepository::new(pool);
        Self {
            // The same upcasters as every reader of the log (listbackup_domain::upcasting).
            store: PersistedEventStore::new_event_store(repo)
                .with_upcasters(listbackup_domain::upcasting::upcasters()),
            services,
            committed,
        }
    }

    /// The aggregate's current state and version, for use cases that must look before they command.
    pub async fn load(&self, id: &str) -> Result<(A, u64), CommandError> {
        let context = self.store.load_aggregate(id).await?;
        Ok((context.aggregate, context.current_sequence as u64))
    }

    /// Runs a creating command on a stream the caller has just named with a fresh id (UUID v7), without
    /// loading it first: it is empty by construction. Should the id exist after all, appending sequence 1
    /// violates the events' primary key and the command fails as a concurrency conflict, never overwriting.
    pub async fn execute_new(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<Committed, CommandError> {
        let context = EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
        };
        self.decide_and_commit(context, command, metadata).await
    }

    /// Runs `command` on aggregate `id` on behalf of `metadata.account_id`.
    ///
    /// `expected_version` is the client's `If-Match`: the command is refused unless the aggregate is at
    /// exactly that version. An aggregate of another account is reported as not found, before the version
    /// is looked at, so a foreign id never reveals that it exists.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed, CommandError> {
        let context = self.store.load_aggregate(id).await?;
        let current = context.current_sequence as u64;
        if let Some(owner) = context.aggregate.owner_account() {
            if owner != metadata.account_id {
                return Err(CommandError::not_found());
            }
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CommandError::VersionMismatch {
                        expected,
                        actual: current,
                    });
                }
            }
        }
        self.decide_and_commit(context, command, metadata).await
    }

    async fn decide_and_commit(
        &self,
        mut context: EventStoreAggregateContext<A>,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<Committed, CommandError> {
        let current = context.current_sequence as u64;
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(|e| CommandError::from(AggregateError::UserError(e)))?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(Committed {
                version: current,
                events: 0,
            });
        }
        let committed = self
            .store
            .commit(events, context, metadata.to_map())
            .await?;
        self.committed.notify_one();
        Ok(Committed {
            version: committed.last().map_or(current, |e| e.sequence as u64),
            events: committed.len(),
        })
    }
}
