//! The workers' metrics (issue 14 §1), recorded through the `metrics` facade: nothing is recorded until the
//! process installs a recorder (the service's Prometheus exporter). Labels never carry an account, source,
//! connection or job id: platforms, statuses and outcomes only, so the series stay few and say nothing about
//! any customer. `docs/operations.md` lists every metric with its alert rules.

use std::time::Duration;

pub(crate) use listbackup_commands::platform_metrics::{
    platform_request, platform_retry, RetryReason,
};
pub use listbackup_commands::platform_metrics::{
    PLATFORM_REQUESTS, PLATFORM_REQUEST_DURATION, PLATFORM_RETRIES,
};

/// Counter: backup attempts that ended, by `platform` and `outcome` (`succeeded`, `partial`, `failed`,
/// `cancelled`).
pub const JOBS_FINISHED: &str = "listbackup_jobs_finished_total";
/// Histogram, seconds: how long a backup attempt ran, from its start in a worker to its recorded outcome,
/// by `platform` and `outcome`.
pub const JOB_DURATION: &str = "listbackup_job_duration_seconds";
/// Counter: records stored by backups that succeeded (whole or partially), by `platform`.
pub const BACKUP_RECORDS: &str = "listbackup_backup_records_total";
/// Counter: bytes stored (gzip NDJSON and file contents, before encryption) by backups that succeeded
/// (whole or partially), by `platform`.
pub const BACKUP_BYTES: &str = "listbackup_backup_bytes_total";
/// Gauge: backups this worker process is running now (draining ones included).
pub const WORKER_RUNNING: &str = "listbackup_worker_backups_running";
/// Gauge: free slots of this worker process (`LISTBACKUP_WORKER_CONCURRENCY` minus the running backups; 0
/// while it drains at shutdown, when it takes nothing new).
pub const WORKER_SLOTS_FREE: &str = "listbackup_worker_slots_free";
/// Counter: backups this process stopped at the end of its shutdown grace and handed back for redelivery.
pub const WORKER_HANDED_BACK: &str = "listbackup_worker_backups_handed_back_total";

/// How a backup attempt ended, as [`JOBS_FINISHED`] labels it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Succeeded,
    Partial,
    Failed,
    Cancelled,
}

/// A backup attempt of `platform` ended with `outcome` after `ran`; `stored` is its records and bytes when it
/// kept a backup.
pub(crate) fn job_finished(
    platform: &'static str,
    outcome: Outcome,
    ran: Duration,
    stored: Option<(u64, u64)>,
) {
    let outcome = match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Partial => "partial",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "cancelled",
    };
    metrics::counter!(JOBS_FINISHED, "platform" => platform, "outcome" => outcome).increment(1);
    metrics::histogram!(JOB_DURATION, "platform" => platform, "outcome" => outcome)
        .record(ran.as_secs_f64());
    if let Some((records, bytes)) = stored {
        metrics::counter!(BACKUP_RECORDS, "platform" => platform).increment(records);
        metrics::counter!(BACKUP_BYTES, "platform" => platform).increment(bytes);
    }
}

/// This process runs `running` backups with `slots` in all; `draining`: it takes nothing new.
pub(crate) fn worker_slots(running: usize, slots: usize, draining: bool) {
    metrics::gauge!(WORKER_RUNNING).set(running as f64);
    let free = if draining {
        0
    } else {
        slots.saturating_sub(running)
    };
    metrics::gauge!(WORKER_SLOTS_FREE).set(free as f64);
}

pub(crate) fn handed_back() {
    metrics::counter!(WORKER_HANDED_BACK).increment(1);
}
