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

/// Counter: webhook and e-mail deliveries that ended, by `event` (the notification's type: `job.failed`,
/// `job.partial`, `job.succeeded`, `connection.reauth_required`, `backup.corrupted`, `ping`) and `outcome`
/// (`delivered`, or `given_up` after the last retry, a deleted webhook or an erased account).
pub const WEBHOOK_DELIVERIES: &str = "listbackup_webhook_deliveries_total";
/// Counter: delivery attempts, by `event` and `outcome` (`delivered` or `failed`; a failed one is retried
/// unless its delivery was given up).
pub const WEBHOOK_ATTEMPTS: &str = "listbackup_webhook_attempts_total";
/// Counter: attempts in flight at the sender's shutdown, abandoned and left pending for the next sender.
pub const WEBHOOK_HANDED_BACK: &str = "listbackup_webhook_deliveries_handed_back_total";
/// Gauge: deliveries pending (queued or waiting for a retry), as the sending process last counted them
/// (at most every second; only the process holding the sender lock reports it).
pub const WEBHOOK_QUEUE_PENDING: &str = "listbackup_webhook_queue_pending";
/// Gauge, seconds: age of the oldest pending delivery (since its notification's event), 0 when none is
/// pending; same reporter and pace as [`WEBHOOK_QUEUE_PENDING`].
pub const WEBHOOK_QUEUE_OLDEST: &str = "listbackup_webhook_queue_oldest_seconds";
/// Gauge, seconds: how long ago the most overdue delivery fell due that is first in line for its webhook and
/// resource (so nothing holds it back but the sender), 0 when none is due. A working sender keeps it near 0
/// whatever the receivers do; it grows when the sender is stuck or has no leader.
pub const WEBHOOK_QUEUE_OVERDUE: &str = "listbackup_webhook_queue_overdue_seconds";

/// An attempt of an `event` delivery was recorded; `status` is the delivery's status after it (`pending`,
/// `delivered` or `failed`).
pub(crate) fn webhook_attempt(event: &str, delivered: bool, status: &str) {
    let event = event.to_owned();
    let outcome = if delivered { "delivered" } else { "failed" };
    metrics::counter!(WEBHOOK_ATTEMPTS, "event" => event.clone(), "outcome" => outcome)
        .increment(1);
    let ended = match status {
        "delivered" => Some("delivered"),
        "failed" => Some("given_up"),
        _ => None,
    };
    if let Some(outcome) = ended {
        metrics::counter!(WEBHOOK_DELIVERIES, "event" => event, "outcome" => outcome).increment(1);
    }
}

pub(crate) fn webhook_handed_back(deliveries: usize) {
    metrics::counter!(WEBHOOK_HANDED_BACK).increment(deliveries as u64);
}

/// `pending` deliveries, the oldest created `oldest_seconds` ago, the most overdue one due `overdue_seconds`
/// ago (`None`: none pending, none due).
pub(crate) fn webhook_queue(
    pending: i64,
    oldest_seconds: Option<f64>,
    overdue_seconds: Option<f64>,
) {
    metrics::gauge!(WEBHOOK_QUEUE_PENDING).set(pending as f64);
    metrics::gauge!(WEBHOOK_QUEUE_OLDEST).set(oldest_seconds.unwrap_or(0.0).max(0.0));
    metrics::gauge!(WEBHOOK_QUEUE_OVERDUE).set(overdue_seconds.unwrap_or(0.0).max(0.0));
}
