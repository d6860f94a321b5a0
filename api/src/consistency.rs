//! Read-your-writes: after a command commits version N, the route waits (bounded) until the read model has
//! projected version N, so the response and the client's next GET show the write.

use std::future::Future;
use std::time::Duration;

use listbackup_projections::ProjectedWatch;
use tokio::time::Instant;

use crate::error::ApiError;

/// How long a write waits for its projection before answering 503 (the write itself is safe in the log).
pub const READ_YOUR_WRITES_DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `projected_version()` reports at least `version`.
///
/// Wakes on every in-process projector commit, and polls every 25 ms for projectors in other processes.
pub async fn wait_for_version<F, Fut>(
    watch: &ProjectedWatch,
    version: u64,
    mut projected_version: F,
) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<i64>, ApiError>>,
{
    let mut watch = watch.clone();
    let deadline = Instant::now() + READ_YOUR_WRITES_DEADLINE;
    loop {
        // Seen-marking first: a commit landing between the check and the wait still wakes us.
        watch.mark_seen();
        if projected_version()
            .await?
            .is_some_and(|v| v >= version as i64)
        {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(version, "projection did not catch up in time");
            return Err(ApiError::unavailable(
                "the change was recorded, but the read model has not caught up yet; read it again shortly",
            ));
        }
        watch
            .next_commit(Duration::from_millis(25).min(deadline - now))
            .await;
    }
}
