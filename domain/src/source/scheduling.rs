//! What a source does when one of its schedule's slots comes.
//!
//! Every `listbackup serve` process runs a scheduler, and each may offer the same slot to the same source.
//! The decision is the source's, on its own stream, so exactly one of them is recorded: the job id is
//! derived from the source and the slot (every scheduler names the same job), the source remembers the last
//! slot it handled (a slot offered again records nothing), and two schedulers appending at once collide on the
//! stream's next sequence, the loser deciding again on the state the winner left.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Source, SourceEvent, SourceStatus};
use crate::job::JobTrigger;
use crate::{JobId, SourceId};

/// Why a slot passed without a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The source's previous job was still queued or running: one job per source at a time.
    JobInProgress,
}

/// The job id of `source_id`'s scheduled slot `slot`, the same in every process that computes it.
///
/// A UUID v7 like every other id (DESIGN §4), so job lists stay in time order: its timestamp is the slot's,
/// and its 74 "random" bits are the SHA-256 of `<sourceId>/<slot RFC 3339>` instead of fresh randomness.
pub fn scheduled_job_id(source_id: SourceId, slot: DateTime<Utc>) -> JobId {
    let name = format!(
        "{source_id}/{}",
        slot.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let digest = Sha256::digest(name.as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(slot.timestamp_millis()).unwrap_or(0);
    JobId::from_uuid(uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid())
}

impl Source {
    /// The events for slot `slot` of the source's schedule: a scheduled job, a skip while the previous job
    /// is unfinished, or nothing at all when the slot is not this source's to run.
    pub(super) fn on_slot(&self, slot: DateTime<Utc>) -> Vec<SourceEvent> {
        // A paused source backs nothing up; the scheduler offered the slot from a read model that had not
        // seen the pause yet.
        if self.status() != SourceStatus::Active {
            return vec![];
        }
        // Likewise a slot of a schedule that has changed since (or of none: manual).
        if !self.schedule().is_some_and(|s| s.fires_at(slot)) {
            return vec![];
        }
        // Handled already, by this scheduler or another: offering it again is harmless.
        if self.last_scheduled_slot().is_some_and(|last| slot <= last) {
            return vec![];
        }
        // Active, so created: the stream names its source.
        let Some(source_id) = self.id() else {
            return vec![];
        };
        match self.active_job() {
            Some(active) => vec![SourceEvent::SyncSkipped {
                slot,
                active_job_id: active,
                reason: SkipReason::JobInProgress,
            }],
            None => vec![SourceEvent::SyncRequested {
                job_id: scheduled_job_id(source_id, slot),
                trigger: JobTrigger::Schedule,
                retry_of: None,
                group_id: None,
                slot: Some(slot),
                data_types: None,
            }],
        }
    }
}
