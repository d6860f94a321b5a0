//! The read side: a catch-up projector that folds the event log into read-model tables, and the queries
//! that list and get from them. Nothing here writes events.

pub mod audit;
pub mod event_log;
pub mod log_signal;
pub mod operations;
pub mod pagination;
pub mod projector;
pub mod read_models;
pub mod rebuild;
pub mod statements;

pub use event_log::{LogPosition, StoredEvent};
pub use log_signal::LogWake;
pub use projector::{ProjectedWatch, Projector};

/// Errors of the read side. Every one is a database problem: the read models have no business rules.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored event that cannot be decoded or encoded; `source` says why (kept whole for the log's chain).
    #[error("event {event_id} ({event_type}) could not be read")]
    BadEvent {
        event_id: uuid::Uuid,
        event_type: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A reader that follows the log alone (under its advisory lock) found its checkpoint moved by another
    /// reader of the same name: it lost the lead, and starts over from the stored checkpoint.
    #[error("checkpoint {name} was moved by another reader")]
    CheckpointMoved { name: String },
}
