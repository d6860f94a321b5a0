//! Retrying a command that lost an optimistic-concurrency race, when the client did not ask for a version.
//!
//! Commands on a busy aggregate (50 sources added to one group at once) collide in the event store: only one
//! writer per sequence number wins. Without `If-Match` the client did not ask for "exactly this version", so
//! the command is simply decided again on the new state. With `If-Match` a collision is the answer (412).

use std::time::Duration;

use cqrs_es::Aggregate;
use listbackup_domain::{AccountOwned, DomainError};

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;

/// How many times a command is decided again after losing a race.
pub const MAX_ATTEMPTS: u32 = 100;

/// Executes `command`, deciding it again on fresh state after each concurrency conflict, up to
/// [`MAX_ATTEMPTS`] times in all, with a small random backoff. With `expected_version` set, never retries.
pub async fn execute_with_retry<A>(
    bus: &CommandBus<A>,
    id: &str,
    command: A::Command,
    metadata: &EventMetadata,
    expected_version: Option<u64>,
) -> Result<Committed, CommandError>
where
    A: Aggregate + AccountOwned,
    A::Error: DomainError,
    A::Command: Clone,
{
    let mut attempt = 1;
    loop {
        match bus
            .execute(id, command.clone(), metadata, expected_version)
            .await
        {
            Err(CommandError::Concurrency)
                if expected_version.is_none() && attempt < MAX_ATTEMPTS =>
            {
                let ceiling_ms = 1u64 << attempt.min(5);
                let pause = rand::random::<u64>() % ceiling_ms + 1;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
