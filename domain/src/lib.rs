//! The ListBackup domain: aggregates, their commands and events, and the platform catalog.
//! Pure: no I/O. The write side (`listbackup-commands`) loads and stores these aggregates; the read side
//! (`listbackup-projections`) folds their events into tables.

pub mod account;
pub mod connection;
pub mod error;
pub mod ids;
pub mod job;
pub mod platform;
pub mod source;
pub mod source_group;
pub mod upcasting;
pub mod values;
pub mod webhook;

pub use error::{DomainError, ErrorChain, ErrorKind, ResourceKind};
pub use ids::{
    parse_hyphenated, ConnectionId, InvalidId, JobId, ResourceId, SourceGroupId, SourceId,
    StreamId, WebhookId,
};

/// Every aggregate belongs to one account; the write side refuses commands from any other.
pub trait AccountOwned {
    /// What clients call a resource of this aggregate: the kind a not-found names.
    const KIND: ResourceKind;
    /// The id of the aggregate's event stream ([`ConnectionId`], [`SourceId`]…): what the write side loads
    /// and commands it by.
    type Id: StreamId + Send + Sync;
    /// `None` while the aggregate has no events yet.
    fn owner_account(&self) -> Option<&str>;
}
