//! Testing a source (`POST /sources/{id}/test`): does its connection still work, and can each of its data
//! types be read? The rules:
//!
//! 1. The source must be live for the caller's account; otherwise it is not found.
//! 2. An OAuth connection's access token close to its expiry ([`crate::oauth::USE_WINDOW`]) is refreshed
//!    first, as a backup does. A failed refresh is logged and the test goes on: the connection test then
//!    reports what the platform answers to the token as it is.
//! 3. The connection is tested with its stored credentials, which is recorded on the connection
//!    (`ConnectionTested`), exactly as `POST /connections/{id}/test` does.
//! 4. One page of each of the source's data types is fetched with the stored credentials, counted and not
//!    stored; a data type with no connector yet reports `ok: None` (unknown, not failed).
//! 5. The source test is ok when the connection test is and no sampled data type failed.

use crate::bus::CommandError;
use crate::connections::{ConnectionCommands, ConnectionTestOutcome};
use crate::metadata::EventMetadata;
use crate::oauth::OauthService;
use crate::sampling::DataTypeSample;
use crate::sources::SourceCommands;
use listbackup_domain::ErrorChain;

/// What a source test found.
#[derive(Debug, Clone)]
pub struct SourceTestOutcome {
    /// The source's connection: the caller's read-your-writes waits for `connection.committed` on it.
    pub connection_id: listbackup_domain::ConnectionId,
    /// The connection test (rule 3), as recorded on the connection.
    pub connection: ConnectionTestOutcome,
    /// One sample per data type of the source, in its order (rule 4).
    pub data_types: Vec<DataTypeSample>,
    /// Rule 5.
    pub ok: bool,
}

/// Tests source `source_id` of `metadata.account_id` (see the module's rules). Not found for a source that
/// is not live for the account.
pub async fn test_source(
    sources: &SourceCommands,
    connections: &ConnectionCommands,
    oauth: &OauthService,
    metadata: &EventMetadata,
    source_id: &listbackup_domain::SourceId,
) -> Result<SourceTestOutcome, CommandError> {
    let (source, _) = sources.live(metadata, source_id).await?;
    let connection_id = crate::sources::connection_of(&source)?;
    if let Err(err) = oauth
        .ensure_fresh(metadata, &connection_id, crate::oauth::USE_WINDOW)
        .await
    {
        tracing::warn!(%connection_id, error = %ErrorChain(&err),
            "token refresh before the source test failed");
    }
    let connection = connections.test(metadata, &connection_id).await?;
    let data_types = connections
        .sample(metadata, &connection_id, source.data_types())
        .await?;
    let ok = connection.ok && data_types.iter().all(|s| s.ok != Some(false));
    Ok(SourceTestOutcome {
        connection_id,
        connection,
        data_types,
        ok,
    })
}
