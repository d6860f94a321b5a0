//! What operators measure of the read side (issue 14 §1, served by `GET /metrics`): how far each reader of
//! the log is behind it, and how many jobs wait or run. Counts and ages only: nothing names an account.

use tokio_postgres::GenericClient;

/// Readers are counted behind the log up to this many events: past it the reader is plainly stuck, and
/// counting further would make every scrape read the whole backlog.
pub const LAG_COUNT_CAP: i64 = 100_000;

/// How far one reader of the log (a row of `checkpoints`: `projector`, `relay`, `source-sagas`, …) is behind.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderLag {
    /// The checkpoint's name.
    pub reader: String,
    /// Committed events after its checkpoint, up to [`LAG_COUNT_CAP`].
    pub events: i64,
    /// Age in seconds of the first event it has not read yet (0 when it has read everything).
    pub seconds: f64,
}

/// Every reader's lag, read in one statement (two index range scans per reader on
/// `(transaction_id, global_position)`).
pub async fn reader_lags(client: &impl GenericClient) -> Result<Vec<ReaderLag>, crate::ReadError> {
    let rows = client
        .query(
            "SELECT c.name,
                    (SELECT count(*) FROM (SELECT 1 FROM events e
                        WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.position)
                        LIMIT $1) behind),
                    COALESCE((SELECT extract(epoch FROM now() - e.recorded_at)::float8 FROM events e
                        WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.position)
                        ORDER BY e.transaction_id, e.global_position LIMIT 1), 0)
             FROM checkpoints c ORDER BY c.name",
            &[&LAG_COUNT_CAP],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ReaderLag {
            reader: row.get(0),
            events: row.get(1),
            seconds: row.get::<_, f64>(2).max(0.0),
        })
        .collect())
}

/// Queued and running jobs by platform and status: `(platform_id, status, count)` (the partial index
/// `read_jobs_active` holds exactly these rows).
pub async fn active_jobs(
    client: &impl GenericClient,
) -> Result<Vec<(String, String, i64)>, crate::ReadError> {
    let rows = client
        .query(
            "SELECT platform_id, status, count(*) FROM read_jobs \
             WHERE status IN ('queued', 'running') GROUP BY platform_id, status",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}
