//! Deleting a connection (`DELETE /connections/{id}[?cascade=true]`). The rules:
//!
//! 1. The connection must be live for the caller's account; otherwise it is not found.
//! 2. With an expected version (`If-Match`), the precondition is checked first (RFC 9110 §13.2.2): a stale
//!    one is a [`CommandError::VersionMismatch`] that changes nothing, before the conflict of rule 3 and
//!    before rule 4 deletes any source.
//! 3. While live sources use the connection, the deletion is refused (a conflict naming how many), so that
//!    no source is left with a connection it cannot back up with.
//! 4. With `cascade`, those sources are deleted first (each `SourceDeleted` then lets go of its groups
//!    through the membership saga); one deleted meanwhile by someone else is just as good.
//! 5. Then the connection is deleted and its stored secret destroyed ([`ConnectionCommands::delete`]).
//!
//! Which sources use a connection is a question across sources that no aggregate answers: it is asked of a
//! [`LiveSources`] port, which the service answers from the sources read model.

use std::future::Future;

use listbackup_domain::ErrorKind;

use crate::bus::{CommandError, Committed};
use crate::connections::ConnectionCommands;
use crate::metadata::EventMetadata;
use crate::sources::SourceCommands;

/// The live (not deleted) sources of a connection, as far as the caller can see.
pub trait LiveSources {
    /// The ids of `account_id`'s live sources that use connection `connection_id`, in a stable order.
    /// A store that cannot be read is [`CommandError::Unavailable`] or [`CommandError::Store`].
    fn of_connection(
        &self,
        account_id: &str,
        connection_id: &listbackup_domain::ConnectionId,
    ) -> impl Future<Output = Result<Vec<listbackup_domain::SourceId>, CommandError>> + Send;
}

/// Deletes connection `connection_id` of `metadata.account_id` (see the module's rules). `expected`: the
/// connection's version the caller saw (`If-Match`); `cascade`: delete the sources that use it first.
pub async fn delete_connection(
    connections: &ConnectionCommands,
    sources: &SourceCommands,
    live_sources: &impl LiveSources,
    metadata: &EventMetadata,
    connection_id: &listbackup_domain::ConnectionId,
    expected: impl Into<crate::ExpectedVersion>,
    cascade: bool,
) -> Result<Committed, CommandError> {
    let expected = expected.into();
    if !expected.is_any() {
        connections
            .require_version(metadata, connection_id, expected.clone())
            .await?;
    }
    let live = live_sources
        .of_connection(&metadata.account_id, connection_id)
        .await?;
    if !live.is_empty() {
        if !cascade {
            return Err(CommandError::Domain {
                kind: ErrorKind::Conflict,
                field: None,
                message: format!(
                    "{} source(s) use this connection: delete them first, or delete with ?cascade=true",
                    live.len()
                ),
            });
        }
        for source_id in live {
            match sources.delete(metadata, &source_id, None).await {
                Ok(_) => {}
                // Deleted meanwhile by someone else: just as good (rule 4).
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err),
            }
        }
    }
    connections.delete(metadata, connection_id, expected).await
}
