//! The write side: commands executed against event-sourced aggregates in Postgres, the credential vault,
//! and the services commands need (platform calls).

pub mod accounts;
pub mod artifacts;
pub mod bus;
pub mod connection_deletion;
pub mod connections;
pub mod data_keys;
pub mod group_sync;
pub mod jobs;
pub mod metadata;
pub mod oauth;
pub mod platform_client;
pub mod platform_metrics;
pub mod restores;
pub mod sampling;
pub mod snapshots;
pub mod source_groups;
pub mod source_test;
pub mod sources;
pub mod vault;
pub mod verification;
pub mod webhooks;

pub use bus::{error_chain, BoxError, CommandBus, CommandError, Committed, MAX_ATTEMPTS};
pub use metadata::EventMetadata;

/// An id argument of a use case the workers call with the `aggregate_id` text they read from the event log
/// (issue 11 §3: ids are typed from the path extractor to the store; the workers are next). A typed id is
/// taken as it is; text that is not a UUID names no resource: its kind's not-found, the same answer as for a
/// missing one.
pub trait IdArg<I> {
    /// The typed id, or `I`'s kind's not-found.
    fn to_id(&self) -> Result<I, CommandError>;
}

macro_rules! id_args {
    ($($id:ty),*) => {$(
        impl IdArg<$id> for $id {
            fn to_id(&self) -> Result<$id, CommandError> {
                Ok(*self)
            }
        }

        impl IdArg<$id> for str {
            fn to_id(&self) -> Result<$id, CommandError> {
                typed_id(self)
            }
        }

        impl IdArg<$id> for String {
            fn to_id(&self) -> Result<$id, CommandError> {
                typed_id(self)
            }
        }
    )*};
}

id_args!(
    listbackup_domain::ConnectionId,
    listbackup_domain::SourceId,
    listbackup_domain::SourceGroupId,
    listbackup_domain::JobId,
    listbackup_domain::WebhookId
);

/// The typed id `raw` names, for ids still held as text inside the write side (aggregate state, events): a
/// string that is not a UUID names no resource, its kind's not-found.
pub(crate) fn typed_id<I: listbackup_domain::ResourceId>(raw: &str) -> Result<I, CommandError> {
    raw.parse().map_err(|_| CommandError::not_found(I::KIND))
}
