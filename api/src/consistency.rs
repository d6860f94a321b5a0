//! Read-your-writes: after a command commits version N, the route waits (bounded) until the read model has
//! projected version N, so the response and the client's next GET show the write. One helper,
//! [`wait_for_aggregate`], for every route.

use std::future::Future;
use std::time::Duration;

use listbackup_projections::ProjectedWatch;
use tokio::time::Instant;

use crate::error::ApiError;

/// How long a write waits for its projection before answering 503 (the write itself is safe in the log).
pub const READ_YOUR_WRITES_DEADLINE: Duration = Duration::from_secs(10);

/// How often a waiter also asks the read model itself, in case the version it waits for was applied by a
/// projector in another process or has already left the in-memory record.
const READ_MODEL_RECHECK: Duration = Duration::from_millis(250);

/// Waits until the projector has applied `aggregate_id` at `version` or later.
///
/// Checks the in-process projector's record of what it applied after each of its commits (no query), and the
/// read model (`projected_version`) now and then.
pub async fn wait_for_aggregate<F, Fut>(
    watch: &ProjectedWatch,
    aggregate_id: &str,
    version: u64,
    mut projected_version: F,
) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<i64>, ApiError>>,
{
    let mut watch = watch.clone();
    let started = Instant::now();
    let deadline = started + READ_YOUR_WRITES_DEADLINE;
    let mut next_recheck = started + READ_MODEL_RECHECK;
    loop {
        watch.mark_seen();
        if watch
            .applied_version(aggregate_id)
            .is_some_and(|v| v >= version as i64)
        {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_recheck {
            if projected_version()
                .await?
                .is_some_and(|v| v >= version as i64)
            {
                return Ok(());
            }
            next_recheck = now + READ_MODEL_RECHECK;
        }
        if now >= deadline {
            tracing::warn!(aggregate_id, version, "projection did not catch up in time");
            return Err(ApiError::unavailable(
                "the change was recorded, but the read model has not caught up yet; read it again shortly",
            ));
        }
        watch
            .next_commit(Duration::from_millis(25).min(deadline - now))
            .await;
    }
}
