//! What every route can reach, and how the layers' errors become API errors.

use listbackup_commands::connections::ConnectionCommands;
use listbackup_commands::CommandError;
use listbackup_domain::ErrorKind;
use listbackup_projections::{ProjectedWatch, ReadError};

use crate::error::{ApiError, ErrorCode};

pub struct AppState {
    /// The read side's pool (tokio-postgres): read models, idempotency keys, health.
    pub db: deadpool_postgres::Pool,
    pub connections: ConnectionCommands,
    pub projected: ProjectedWatch,
    /// Present when NATS is configured; readiness requires it connected.
    pub nats: Option<async_nats::Client>,
}

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
                ErrorKind::Invalid => match field {
                    Some(field) => ApiError::field(field, message),
                    None => ApiError::bad_request(message),
                },
            },
            CommandError::VersionMismatch { expected, actual } => ApiError::new(
                ErrorCode::PreconditionFailed,
                format!("If-Match names version {expected}, but the resource is at version {actual}"),
            ),
            CommandError::Concurrency => ApiError::new(
                ErrorCode::VersionConflict,
                "the resource was changed by another request at the same time; read it and try again",
            ),
            CommandError::Unavailable(reason) => {
                tracing::error!(%reason, "event store unavailable");
                ApiError::unavailable("the event store is unavailable; try again shortly")
            }
            CommandError::Store(reason) => ApiError::from_unexpected(reason),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Pool(e) => {
                tracing::error!(error = %e, "read model database unavailable");
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
