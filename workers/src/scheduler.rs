//! The scheduler: offers each source with a schedule its slots as they come, with actor `scheduler`.
//!
//! Every `listbackup serve` process runs one, with no leader election: exactly-once per slot is the Source
//! aggregate's guarantee, not this loop's (see `domain/src/source/scheduling.rs`). The slot's job id is derived
//! from the source and the slot, the source refuses a slot it has handled already, and two schedulers
//! appending at once collide on the stream's next sequence; the loser decides again and records nothing.
//!
//! Which sources are due comes from the sources read model (`next_scheduled_at`, the first slot nobody has
//! handled, indexed), so a tick reads a handful of rows however many sources exist.
//!
//! Slots missed while no scheduler ran (every process down, or a deploy in progress) are not replayed one by
//! one: the source gets one catch-up job, for the most recent missed slot, and the older ones pass without a
//! job or an event. A backup is a snapshot of now; a burst of identical jobs would only queue behind each
//! other and hammer the platform's rate limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::StreamExt;
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::source::scheduled_job_id;
use listbackup_domain::ErrorChain;
use listbackup_domain::{ErrorKind, SourceId};
use listbackup_projections::read_models::sources::{due_for_schedule, DueCursor, DueSource};
use listbackup_projections::ReadError;
use tokio_util::sync::CancellationToken;

/// The actor recorded on the scheduler's events (DESIGN §2).
pub const ACTOR: &str = "scheduler";

/// Where the scheduler reads the time: the system clock, or a clock a test sets by hand so that minute slots
/// come when it says rather than as the wall clock passes.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// A time set by hand ([`Clock::set`]), shared by every clone.
    Manual(Arc<std::sync::Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A hand-set clock starting at `at`.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self::Manual(Arc::new(std::sync::Mutex::new(at)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Manual(at) => *at.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Sets a hand-set clock to `at`; the system clock cannot be set (a no-op).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Self::Manual(now) = self {
            *now.lock().unwrap_or_else(|e| e.into_inner()) = at;
        }
    }
}

pub struct Scheduler {
    pool: Pool,
    clock: Clock,
    sources: Arc<SourceCommands>,
    /// The longest wait between two passes. Slots are whole minutes, so an idle scheduler looks once at
    /// each minute boundary (one query a minute); this caps that wait (tests shorten it).
    poll_interval: Duration,
    /// Due sources read per query.
    page_size: i64,
    /// Slots offered at once (each is a load and an append on one source's stream).
    concurrency: usize,
}

/// How soon a pass that failed, or left slots the read model does not show as handled yet, is tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The time from `now` to the next whole minute (at least a millisecond): when the next slot can fall due.
fn until_next_minute(now: DateTime<Utc>) -> Duration {
    use chrono::DurationRound;
    let minute = chrono::TimeDelta::minutes(1);
    let next = now
        .duration_trunc(minute)
        .map_or(now + minute, |start| start + minute);
    (next - now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

/// What one pass over the due sources did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Slots offered to their source.
    pub offered: usize,
    /// Of those, the ones that recorded an event (a queued job or a skip); the others were handled already
    /// or are no longer the source's to run.
    pub recorded: usize,
    /// Offers that failed and are tried again on the next tick.
    pub failed: usize,
}

impl Scheduler {
    pub fn new(pool: Pool, sources: Arc<SourceCommands>) -> Self {
        Self {
            pool,
            clock: Clock::System,
            sources,
            poll_interval: Duration::from_secs(60),
            page_size: 500,
            concurrency: 8,
        }
    }

    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `shutdown`. A failing pass is logged and the next one tries again: nothing is lost, since
    /// a slot stays due until its source has handled it.
    pub async fn run(self, shutdown: CancellationToken) {
        // Slots this process offered with a definite answer while the read model may not show it yet: not
        // offered again every tick until the projector catches up.
        let mut answered = HashMap::new();
        loop {
            let retry_soon = match self.tick(self.clock.now(), &mut answered).await {
                Ok(report) => {
                    if report.recorded > 0 || report.failed > 0 {
                        tracing::info!(
                            offered = report.offered,
                            recorded = report.recorded,
                            failed = report.failed,
                            "schedule slots offered"
                        );
                    }
                    report.failed > 0 || !answered.is_empty()
                }
                Err(err) => {
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "scheduler pass failed; retrying"
                    );
                    true
                }
            };
            // A failed offer (or one the read model does not show yet) is looked at again within a second;
            // otherwise nothing can fall due before the next minute boundary.
            let wait = if retry_soon {
                RETRY_INTERVAL
            } else {
                until_next_minute(self.clock.now())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait.min(self.poll_interval)) => {}
            }
        }
    }

    /// Offers every source due at `now` its due slot, once per slot per process (`answered` remembers the
    /// slots offered and answered, until the read model has moved past them).
    pub async fn tick(
        &self,
        now: DateTime<Utc>,
        answered: &mut HashMap<SourceId, DateTime<Utc>>,
    ) -> Result<TickReport, ReadError> {
        let mut report = TickReport::default();
        let mut still_due = HashMap::new();
        let mut cursor: Option<DueCursor> = None;
        loop {
            let page = {
                let client = self.pool.get().await?;
                due_for_schedule(&client, now, cursor.as_ref(), self.page_size).await?
            };
            let Some(last) = page.last() else { break };
            cursor = Some((last.first_unhandled, last.source_id));
            let full = page.len() as i64 == self.page_size;
            let offers: Vec<(DueSource, DateTime<Utc>)> = page
                .into_iter()
                .filter_map(|due| {
                    let slot = due.schedule.due_slot(due.first_unhandled, now)?;
                    if answered.get(&due.source_id) == Some(&slot) {
                        still_due.insert(due.source_id, slot);
                        return None;
                    }
                    Some((due, slot))
                })
                .collect();
            let outcomes: Vec<(SourceId, DateTime<Utc>, Result<usize, CommandError>)> =
                futures::stream::iter(offers)
                    .map(|(due, slot)| async move {
                        let outcome = self.offer(&due, slot).await;
                        (due.source_id, slot, outcome)
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            for (source_id, slot, outcome) in outcomes {
                report.offered += 1;
                match outcome {
                    Ok(events) => {
                        report.recorded += usize::from(events > 0);
                        still_due.insert(source_id, slot);
                    }
                    // Deleted since the read model was written: it will not be due again.
                    Err(CommandError::Domain {
                        kind: ErrorKind::NotFound,
                        ..
                    }) => {
                        still_due.insert(source_id, slot);
                    }
                    Err(err) => {
                        report.failed += 1;
                        tracing::warn!(%source_id, %slot, error = %ErrorChain(&err), "schedule slot not recorded; retrying");
                    }
                }
            }
            if !full {
                break;
            }
        }
        // Sources the read model no longer shows as due have moved on: forget them.
        *answered = still_due;
        Ok(report)
    }

    /// Offers `slot` to its source; returns how many events it recorded.
    async fn offer(&self, due: &DueSource, slot: DateTime<Utc>) -> Result<usize, CommandError> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let metadata = EventMetadata::for_request(&due.account_id, ACTOR.to_owned(), &request_id);
        let committed = self
            .sources
            .run_scheduled_slot(&metadata, &due.source_id, slot)
            .await?;
        if committed.events > 0 {
            tracing::info!(
                source_id = %due.source_id,
                %slot,
                job_id = %scheduled_job_id(due.source_id, slot),
                "schedule slot recorded (its job queued, or skipped while the previous job is unfinished)"
            );
        } else {
            tracing::debug!(source_id = %due.source_id, %slot, "schedule slot already handled");
        }
        Ok(committed.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_scheduler_waits_for_the_next_minute_boundary() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            until_next_minute(at("2026-11-30T03:00:00Z")),
            Duration::from_secs(60)
        );
        assert_eq!(
            until_next_minute(at("2026-11-30T03:00:59.250Z")),
            Duration::from_millis(750)
        );
        assert_eq!(
            until_next_minute(at("2026-11-30T03:00:59.9999Z")),
            Duration::from_millis(1),
            "never a zero wait: a pass just before the boundary waits for it"
        );
    }
}
