//! Executes commands against aggregates stored in the Postgres event store (postgres-es, event-store mode,
//! appending through [`EventRepository`]).
//!
//! We drive cqrs-es's `EventStore` directly rather than through `CqrsFramework::execute` for two reasons:
//! the caller needs the committed sequence (it becomes the resource `version`, its `ETag`, and what
//! read-your-writes waits for), and `If-Match` must be checked against the very state the command is
//! decided on. Projections are not cqrs-es queries: they are catch-up readers of the log (DESIGN §2).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use listbackup_domain::ErrorChain;
use listbackup_domain::{AccountOwned, DomainError, ErrorKind, ResourceKind, StreamId};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::event_repository::{Companion, EventRepository};
use crate::metadata::EventMetadata;

/// The result of a command that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The aggregate's sequence after the command: its `version`.
    pub version: u64,
    /// How many events the command recorded (0 when it changed nothing).
    pub events: usize,
}

/// The versions of an aggregate a command may run on: the client's `If-Match` (RFC 9110 §13.1.1), read by
/// the API. `Any` is no precondition (no `If-Match`, or `If-Match: *`, which any existing resource meets);
/// `OneOf` holds the versions the strong entity-tags of the header name, in its order. An empty `OneOf` is
/// a precondition nothing meets (only weak entity-tags, which never match under the strong comparison
/// `If-Match` uses, or tags this API never issues): the command is refused with
/// [`CommandError::VersionMismatch`] once the aggregate is found to be the caller's.
///
/// `From<Option<u64>>` keeps the plain form: `None` is `Any`, `Some(v)` is `OneOf([v])`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ExpectedVersion {
    #[default]
    Any,
    OneOf(Vec<u64>),
}

impl ExpectedVersion {
    /// Whether a command may run on the aggregate at `version`.
    pub fn admits(&self, version: u64) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(versions) => versions.contains(&version),
        }
    }

    /// No precondition at all.
    pub fn is_any(&self) -> bool {
        matches!(self, Self::Any)
    }
}

impl From<Option<u64>> for ExpectedVersion {
    fn from(version: Option<u64>) -> Self {
        version.map_or(Self::Any, |v| Self::OneOf(vec![v]))
    }
}

/// `version 3`, `versions 3, 4`, `no version of the resource` (an empty list), `any version`.
impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::OneOf(versions) => match versions.as_slice() {
                [] => f.write_str("no version of the resource"),
                [one] => write!(f, "version {one}"),
                many => {
                    let listed: Vec<String> = many.iter().map(u64::to_string).collect();
                    write!(f, "versions {}", listed.join(", "))
                }
            },
        }
    }
}

/// Why a command was not accepted, whatever the aggregate.
///
/// The conflict policy, the same for every aggregate: a command without an expected version that loses an
/// optimistic-concurrency race is decided again on the winner's state (up to [`MAX_ATTEMPTS`] times) and only
/// then reported as [`CommandError::Concurrency`]; a command with an expected version (`If-Match`) is never
/// retried, and any mismatch, seen before the decision or lost in the race, is [`CommandError::VersionMismatch`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command, or it does not exist for the caller.
    #[error("{message}")]
    Domain {
        kind: ErrorKind,
        field: Option<&'static str>,
        message: String,
    },
    /// `If-Match` named another version than the current one. `actual` is `None` when the mismatch was found
    /// at commit time (another request committed first), so the version now current is not known here.
    #[error("the resource is not at {expected}")]
    VersionMismatch {
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// Without an expected version, the command kept losing optimistic-concurrency races on a busy aggregate
    /// ([`MAX_ATTEMPTS`] in a row), or a new stream's id was taken.
    #[error("the resource was changed concurrently; retry")]
    Concurrency,
    /// A store the command needs (the event store, the credential vault, backup storage) cannot be used
    /// right now: a 503 to retry. `context` says what was being done; `source` is the driver's error, kept
    /// whole so a log prints its chain (never shown to a client).
    #[error("{context}")]
    Unavailable {
        context: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
    /// The command waits on a follow-up of an earlier event that is not recorded yet (a source whose last job
    /// has ended, before the sagas record that end on the source): a 503 to retry shortly. `context` says
    /// what is awaited, for the client.
    #[error("{context}")]
    CatchingUp { context: Cow<'static, str> },
    /// Anything else: a bug or a corrupt store (a 500 whose details stay in the log).
    #[error("{context}")]
    Store {
        context: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
}

/// Any error, as the source of a [`CommandError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `err` and each of its sources, joined by ": " (as `anyhow` prints `{:#}`; a source the text already ends
/// with is not repeated): for a job's failure message and other places that keep an error as text. See
/// [`ErrorChain`](listbackup_domain::ErrorChain), its `Display` form for log fields.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    ErrorChain(err).to_string()
}

impl CommandError {
    /// The one not-found of a resource kind: what a missing resource, a deleted one and another account's
    /// all answer, with the same `detail` the read side gives (`ResourceKind::not_found`).
    pub fn not_found(kind: ResourceKind) -> Self {
        Self::Domain {
            kind: ErrorKind::NotFound,
            field: None,
            message: kind.not_found().into(),
        }
    }

    /// The not-found of a resource named by a body field (`sourceId`), not by the path.
    pub fn not_found_field(kind: ResourceKind, field: &'static str) -> Self {
        Self::Domain {
            kind: ErrorKind::NotFound,
            field: Some(field),
            message: kind.not_found().into(),
        }
    }

    /// `context` (what was being done) is unavailable right now because of `source`.
    pub fn unavailable(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// `context` failed unexpectedly because of `source`.
    pub fn store(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self::Store {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A stored state that cannot be (a bug or a corrupt store), found without any underlying error.
    pub fn corrupt(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Store {
            context: context.into(),
            source: None,
        }
    }

    /// Whether this is a not-found (of any kind).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Domain {
                kind: ErrorKind::NotFound,
                ..
            }
        )
    }
}

/// How many times a command without an expected version is decided in all before a lost race is reported:
/// enough for fifty writers landing on one aggregate at once (each attempt lets at least one of them win).
pub const MAX_ATTEMPTS: u32 = 100;

impl<E: DomainError> From<AggregateError<E>> for CommandError {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Domain {
                kind: e.kind(),
                field: e.field(),
                message: e.to_string(),
            },
            AggregateError::AggregateConflict => Self::Concurrency,
            AggregateError::DatabaseConnectionError(e) => {
                Self::unavailable("the event store is unavailable", e)
            }
            // postgres-es files a pool that timed out (every connection busy) among its unknown errors: it is
            // the database being unavailable for now, not a bug.
            AggregateError::UnexpectedError(e) if is_unavailable(e.as_ref()) => {
                Self::unavailable("the event store is unavailable", e)
            }
            AggregateError::DeserializationError(e) => {
                Self::store("an event of the store does not deserialize", e)
            }
            AggregateError::UnexpectedError(e) => Self::store("unexpected event store failure", e),
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
    /// Loads aggregates (cqrs-es, through the upcasters).
    store: Arc<PersistedEventStore<EventRepository, A>>,
    /// Appends a command's events (with a [`Companion`] row when the use case has one).
    appends: Arc<EventRepository>,
    /// The runtime the bus was made on (the process's main one), where every use of the event store's pool
    /// runs: an sqlx connection is a socket of the runtime that opened it, and the HTTP server's worker
    /// threads run runtimes of their own that end when it stops. A connection one of them opened would fail
    /// whoever drew it next ("A Tokio 1.x context was found, but it is being shutdown"): a backup finishing
    /// during the shutdown grace, a late request.
    home: tokio::runtime::Handle,
    services: A::Services,
    /// Woken after every commit so an in-process projector picks the events up at once instead of at its
    /// next poll. Other processes' projectors still find them by polling.
    committed: Arc<Notify>,
}

impl<A> CommandBus<A>
where
    A: Aggregate + AccountOwned + 'static,
    A::Error: DomainError,
{
    /// A bus over the event store in `pool`; `committed` is woken after every commit.
    pub fn new(pool: PgPool, services: A::Services, committed: Arc<Notify>) -> Self {
        Self {
            // The same upcasters as every reader of the log (listbackup_domain::upcasting).
            store: Arc::new(
                PersistedEventStore::new_event_store(EventRepository::new(pool.clone()))
                    .with_upcasters(listbackup_domain::upcasting::upcasters()),
            ),
            appends: Arc::new(EventRepository::new(pool)),
            home: tokio::runtime::Handle::current(),
            services,
            committed,
        }
    }

    /// Runs `work` on the event store on the bus's home runtime (see [`CommandBus::home`]); a runtime that
    /// is shutting down and drops it makes the store unavailable.
    async fn at_home<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, CommandError>> + Send + 'static,
    ) -> Result<T, CommandError> {
        match self.home.spawn(work).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(CommandError::unavailable(
                "the event store is unavailable: the process is stopping",
                err,
            )),
        }
    }

    async fn load_context(
        &self,
        id: &A::Id,
    ) -> Result<EventStoreAggregateContext<A>, CommandError> {
        let (store, stream) = (self.store.clone(), id.stream_id());
        self.at_home(async move { Ok(store.load_aggregate(&stream).await?) })
            .await
    }

    /// The aggregate's current state and version, for use cases that must look before they command.
    /// Any account's: the caller checks that the caller may see it.
    pub async fn load(&self, id: &A::Id) -> Result<(A, u64), CommandError> {
        let context = self.load_context(id).await?;
        Ok((context.aggregate, context.current_sequence as u64))
    }

    /// Runs a creating command on a stream the caller has just named with a fresh id (UUID v7), without
    /// loading it first: it is empty by construction. Should the id exist after all, appending sequence 1
    /// violates the events' primary key and the command fails as a concurrency conflict, never overwriting.
    pub async fn execute_new(
        &self,
        id: &A::Id,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<Committed, CommandError> {
        self.execute_new_with(id, command, metadata, None).await
    }

    /// [`execute_new`](Self::execute_new), writing `companion`'s row in the same statement as the events
    /// (see [`Companion`]): both are committed, or neither. Without events to record, the row is not
    /// written either.
    pub async fn execute_new_with(
        &self,
        id: &A::Id,
        command: A::Command,
        metadata: &EventMetadata,
        companion: Option<Companion>,
    ) -> Result<Committed, CommandError> {
        let context = EventStoreAggregateContext {
            aggregate_id: id.stream_id(),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
        };
        self.decide_and_commit(context, command, metadata, companion)
            .await
    }

    /// Runs `command` on aggregate `id` on behalf of `metadata.account_id`, under the one conflict policy
    /// (see [`CommandError`]).
    ///
    /// `expected_version` is the client's `If-Match`: the command is refused unless the aggregate is at
    /// exactly that version, and is never retried. Without it, a command that loses a race with another
    /// writer is decided again on fresh state, with a small random backoff. An aggregate of another account
    /// is reported as not found, before the version is looked at, so a foreign id never reveals that it
    /// exists.
    pub async fn execute(
        &self,
        id: &A::Id,
        command: A::Command,
        metadata: &EventMetadata,
        expected_version: impl Into<ExpectedVersion>,
    ) -> Result<Committed, CommandError>
    where
        A::Command: Clone,
    {
        let expected_version = expected_version.into();
        let mut attempt = 1;
        loop {
            match self
                .execute_once(id, command.clone(), metadata, expected_version.clone())
                .await
            {
                Err(CommandError::Concurrency) => match expected_version {
                    ExpectedVersion::OneOf(_) => {
                        return Err(CommandError::VersionMismatch {
                            expected: expected_version,
                            actual: None,
                        })
                    }
                    ExpectedVersion::Any if attempt < MAX_ATTEMPTS => {
                        let ceiling_ms = 1u64 << attempt.min(5);
                        let pause = rand::random::<u64>() % ceiling_ms + 1;
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                        attempt += 1;
                    }
                    ExpectedVersion::Any => return Err(CommandError::Concurrency),
                },
                other => return other,
            }
        }
    }

    /// Runs `command` once, without the retry: a lost race is [`CommandError::Concurrency`] whether or not a
    /// version is expected. For the few commands whose lost race is itself the answer (a job's start and
    /// restart, where the loser is a duplicated or raced message that must stand down).
    pub async fn execute_once(
        &self,
        id: &A::Id,
        command: A::Command,
        metadata: &EventMetadata,
        expected_version: impl Into<ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let expected_version = expected_version.into();
        let context = self.load_context(id).await?;
        let current = context.current_sequence as u64;
        if let Some(owner) = context.aggregate.owner_account() {
            if owner != metadata.account_id {
                return Err(CommandError::not_found(A::KIND));
            }
            if !expected_version.admits(current) {
                return Err(CommandError::VersionMismatch {
                    expected: expected_version,
                    actual: Some(current),
                });
            }
        }
        self.decide_and_commit(context, command, metadata, None)
            .await
    }

    /// Decides `command` on the loaded `context` and appends what it decided as one statement
    /// ([`EventRepository::append`]): the events numbered after the context's sequence, each with the
    /// command's metadata, as cqrs-es's own commit would store them.
    async fn decide_and_commit(
        &self,
        mut context: EventStoreAggregateContext<A>,
        command: A::Command,
        metadata: &EventMetadata,
        companion: Option<Companion>,
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
        let metadata = metadata.to_map();
        let envelopes: Vec<EventEnvelope<A>> = events
            .into_iter()
            .zip(context.current_sequence + 1..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let serialized = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(AggregateError::<A::Error>::from)?;
        let appends = self.appends.clone();
        self.at_home(async move {
            appends
                .append::<A>(&serialized, companion)
                .await
                .map_err(|e| CommandError::from(AggregateError::<A::Error>::from(e)))
        })
        .await?;
        self.committed.notify_one();
        Ok(Committed {
            version: envelopes.last().map_or(current, |e| e.sequence as u64),
            events: envelopes.len(),
        })
    }
}
