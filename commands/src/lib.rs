//! The write side: commands executed against event-sourced aggregates in Postgres, the credential vault,
//! and the services commands need (platform calls).

pub mod accounts;
pub mod artifacts;
pub mod bus;
pub mod connection_deletion;
pub mod connections;
pub mod data_keys;
pub mod event_repository;
pub mod group_sync;
pub mod jobs;
pub mod metadata;
pub mod oauth;
pub mod platform_client;
pub mod platform_metrics;
pub mod public_addresses;
pub mod restores;
pub mod sampling;
pub mod snapshots;
pub mod source_groups;
pub mod source_sync;
pub mod source_test;
pub mod sources;
pub mod vault;
pub mod verification;
pub mod webhooks;

pub use bus::{
    error_chain, BoxError, CommandBus, CommandError, Committed, ExpectedVersion, MAX_ATTEMPTS,
};
pub use metadata::EventMetadata;

/// The typed id `raw` names, for ids the write side still holds as text (the OAuth flow's pending
/// authorizations): a string that is not a UUID names no resource, its kind's not-found.
pub(crate) fn typed_id<I: listbackup_domain::ResourceId>(raw: &str) -> Result<I, CommandError> {
    raw.parse().map_err(|_| CommandError::not_found(I::KIND))
}
