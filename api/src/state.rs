//! What every route can reach, and how the layers' errors become API errors.

use listbackup_commands::connections::ConnectionCommands;
use listbackup_commands::CommandError;
use listbackup_domain::ErrorChain;
use listbackup_domain::ErrorKind;
use listbackup_projections::{ProjectedWatch, ReadError};

use crate::error::{ApiError, ErrorCode};

pub struct AppState {
    /// The read side's pool (tokio-postgres): read models, idempotency keys, health.
    pub db: deadpool_postgres::Pool,
    pub connections: ConnectionCommands,
    /// Sources and source groups (issue 4).
    pub sources: listbackup_commands::sources::SourceCommands,
    pub source_groups: listbackup_commands::source_groups::SourceGroupCommands,
    /// OAuth flow and token lifecycle (issue 3).
    pub oauth: std::sync::Arc<listbackup_commands::oauth::OauthService>,
    pub projected: ProjectedWatch,
    /// Present when NATS is configured; readiness requires it connected.
    pub nats: Option<async_nats::Client>,
    /// `LISTBACKUP_NATS_PREFIX`: live job progress is on core NATS `<prefix>.progress.<jobId>`.
    pub nats_prefix: String,
    /// Account erasure (issue 13 §2).
    pub accounts: std::sync::Arc<listbackup_commands::accounts::AccountCommands>,
    /// Jobs (issue 5): cancellation.
    pub jobs: std::sync::Arc<listbackup_commands::jobs::JobCommands>,
    /// Cancelled when the service stops: live event streams (`GET /jobs/{id}/events`) end then, so that a
    /// graceful stop does not wait for the jobs they follow.
    pub closing_streams: tokio_util::sync::CancellationToken,
    /// Stored backups (`GET /jobs/{id}/files`), when `LISTBACKUP_STORAGE_URL` is configured.
    pub job_files: Option<std::sync::Arc<dyn listbackup_commands::artifacts::JobFiles>>,
    /// Snapshots, record history and exports (issue 13 §4, §6); `None` without backup storage.
    pub snapshots: Option<std::sync::Arc<listbackup_commands::snapshots::Snapshots>>,
    /// Reads backups back for `POST /jobs/{id}/verify`; `None` without backup storage.
    pub verifier: Option<std::sync::Arc<listbackup_commands::verification::BackupVerifier>>,
    /// Signs audit exports (`LISTBACKUP_AUDIT_SIGNING_KEY`); without it `GET /events/export` is refused.
    pub audit_signer: Option<listbackup_projections::audit::export::AuditSigner>,
    /// Demo mode's routing, when it is on: `GET /platforms` shows the demo credentials of the platforms it
    /// emulates.
    pub demo: Option<listbackup_commands::platform_client::DemoPlatforms>,
    /// Webhooks and e-mail notification targets (issue 14 §5).
    pub webhooks: listbackup_commands::webhooks::WebhookCommands,
}

/// The command layer's errors as problems. The conflict policy is the command bus's (one for every
/// aggregate): an `If-Match` that is not current is a [`CommandError::VersionMismatch`], whether it was seen
/// before the decision or lost at commit, and answers 412 VERSION_CONFLICT; business conflicts are 409.
impl From<CommandError> for ApiError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Domain {
                kind,
                field,
                message,
            } => match kind {
                ErrorKind::NotFound => ApiError::new(ErrorCode::NotFound, message),
                ErrorKind::Conflict => ApiError::conflict(message),
                ErrorKind::Gone => ApiError::new(ErrorCode::Gone, message),
                ErrorKind::Invalid => match field {
                    Some(field) => ApiError::field(field, message),
                    None => ApiError::bad_request(message),
                },
            },
            CommandError::VersionMismatch {
                expected,
                actual: Some(actual),
            } => ApiError::new(
                ErrorCode::VersionConflict,
                format!("If-Match names {expected}, but the resource is at version {actual}"),
            ),
            CommandError::VersionMismatch {
                expected,
                actual: None,
            } => ApiError::new(
                ErrorCode::VersionConflict,
                format!(
                    "If-Match names {expected}, but another request changed the resource first"
                ),
            ),
            // The bus already decided the command again many times: the resource is too busy right now.
            CommandError::Concurrency => {
                tracing::warn!("a command kept losing concurrency races");
                ApiError::unavailable(
                    "the resource is being changed by many requests at once; try again shortly",
                )
            }
            err @ CommandError::Unavailable { .. } => {
                // The database's own reason goes to the log (with its chain), not to the client.
                tracing::error!(error = %ErrorChain(&err), "database unavailable");
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            CommandError::CatchingUp { context } => ApiError::unavailable(context),
            err @ CommandError::Store { .. } => ApiError::from_unexpected(err),
        }
    }
}

/// The snapshot use cases' errors as problems: a snapshot or record that is not the account's is the one
/// 404; an expired backup, a chain reading from one, or an erased account's data is 410 GONE, as downloads.
impl From<listbackup_commands::snapshots::SnapshotError> for ApiError {
    fn from(err: listbackup_commands::snapshots::SnapshotError) -> Self {
        use listbackup_commands::snapshots::SnapshotError as E;
        use listbackup_domain::ResourceKind;
        match err {
            E::SnapshotNotFound => ApiError::not_found(ResourceKind::Snapshot),
            E::RecordNotFound => ApiError::not_found(ResourceKind::Record),
            err @ (E::Expired { .. } | E::ChainExpired { .. } | E::Erased { .. }) => {
                ApiError::new(ErrorCode::Gone, err.to_string())
            }
            E::BadCursor => ApiError::field("cursor", "is not a cursor this API issued"),
            E::Pool(e) => e.into(),
            other => ApiError::from_unexpected(other),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            // Every connection busy is not the database down: say which (both are worth a retry).
            ReadError::Pool(deadpool_postgres::PoolError::Timeout(
                deadpool_postgres::TimeoutType::Wait,
            )) => {
                tracing::warn!("no read pool connection came free in time");
                ApiError::unavailable(
                    "every database connection is busy (the pool is exhausted); try again shortly",
                )
            }
            ReadError::Pool(e) => {
                tracing::error!(
                    error = %ErrorChain(&e),
                    "read model database unavailable"
                );
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            other => ApiError::from_unexpected(other),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        ReadError::Pool(err).into()
    }
}
