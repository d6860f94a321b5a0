//! The command layer's ports that the read models answer: questions across aggregates that no event stream
//! answers alone.

use listbackup_commands::connection_deletion::LiveSources;
use listbackup_commands::CommandError;
use listbackup_projections::read_models::sources as read_sources;
use listbackup_projections::ReadError;

/// The read side's pool, as the command layer's ports.
pub struct ReadModels<'a>(pub &'a deadpool_postgres::Pool);

/// A read model error as the command layer's: an exhausted or unreachable pool is a 503 to retry, anything
/// else a 500 (as [`ReadError`] maps to an `ApiError` directly).
fn command_error(context: &'static str, err: ReadError) -> CommandError {
    match err {
        ReadError::Pool(e) => CommandError::unavailable(context, e),
        other => CommandError::store(context, other),
    }
}

impl LiveSources for ReadModels<'_> {
    async fn of_connection(
        &self,
        account_id: &str,
        connection_id: &listbackup_domain::ConnectionId,
    ) -> Result<Vec<listbackup_domain::SourceId>, CommandError> {
        const CONTEXT: &str = "reading the live sources of a connection";
        let client = self
            .0
            .get()
            .await
            .map_err(|e| command_error(CONTEXT, ReadError::Pool(e)))?;
        // A row whose id is not a UUID is a corrupt read model (a store error), not a missing source.
        read_sources::live_ids_for_connection(&client, account_id, *connection_id)
            .await
            .map_err(|e| command_error(CONTEXT, e))
    }
}
