//! Retention: which of a source's stored backups its policy expires, decided on data alone (the sweeper in
//! `listbackup_workers::retention` reads the backups, asks this, and has each Job aggregate record the expiry).
//!
//! A source's policy is `retentionDays` (a backup older than that expires) and, optionally, `keepLast` (only
//! the newest N backups are kept): a backup past either expires. Never expired, whatever the policy:
//!
//! - the source's latest **succeeded** backup, and its latest backup of any kind (succeeded or partial), so a
//!   source always keeps its newest data and its newest complete data;
//! - a backup under a hold (the Job aggregate refuses it too, so a hold placed meanwhile still wins).

use chrono::{DateTime, Duration, Utc};

use super::JobStatus;
use crate::JobId;

/// A source's retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A backup that finished longer ago than this expires.
    pub retention_days: u32,
    /// Only the newest this many backups (succeeded or partial) are kept; `None`: no limit by count.
    pub keep_last: Option<u32>,
}

/// One stored backup of a source that has not expired: a succeeded or partial job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    pub job_id: JobId,
    pub status: JobStatus,
    pub finished_at: DateTime<Utc>,
    /// Whether the backup is under a hold.
    pub held: bool,
}

/// The backups of one source (`backups`, any order; jobs that are not stored backups are ignored) that
/// `policy` expires at `now`, newest first: the order in which to expire them, so a newer backup that
/// refers to an older one's file contents goes first.
pub fn expirable(
    backups: &[StoredBackup],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let mut stored: Vec<&StoredBackup> = backups
        .iter()
        .filter(|b| matches!(b.status, JobStatus::Succeeded | JobStatus::Partial))
        .collect();
    // Newest first; the job id (UUID v7) breaks ties in time.
    stored.sort_by(|a, b| (b.finished_at, &b.job_id).cmp(&(a.finished_at, &a.job_id)));
    let latest = stored.first().map(|b| b.job_id);
    let latest_succeeded = stored
        .iter()
        .find(|b| b.status == JobStatus::Succeeded)
        .map(|b| b.job_id);
    let cutoff = now - Duration::days(i64::from(policy.retention_days));
    stored
        .iter()
        .enumerate()
        .filter(|(rank, backup)| {
            let protected = Some(backup.job_id) == latest
                || Some(backup.job_id) == latest_succeeded
                || backup.held;
            let too_old = backup.finished_at < cutoff;
            let too_many = policy.keep_last.is_some_and(|n| *rank >= n as usize);
            !protected && (too_old || too_many)
        })
        .map(|(_, backup)| backup.job_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T03:00:00Z")
            .unwrap()
            .to_utc()
            + Duration::days(day)
    }

    /// A job id named by a short text (`"a"`, `"old"`), the ids ordered as their names are.
    fn job(name: &str) -> JobId {
        let mut bytes = [0u8; 16];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        JobId::from_uuid(uuid::Uuid::from_bytes(bytes))
    }

    fn backup(id: &str, status: JobStatus, day: i64) -> StoredBackup {
        StoredBackup {
            job_id: job(id),
            status,
            finished_at: at(day),
            held: false,
        }
    }

    const DAYS_30: RetentionPolicy = RetentionPolicy {
        retention_days: 30,
        keep_last: None,
    };

    #[test]
    fn keep_last_expires_the_older_backups_newest_first() {
        let backups = [
            backup("a", JobStatus::Succeeded, 0),
            backup("b", JobStatus::Succeeded, 1),
            backup("c", JobStatus::Succeeded, 2),
            backup("f", JobStatus::Failed, 3),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..DAYS_30
        };
        assert_eq!(expirable(&backups, &policy, at(3)), [job("b"), job("a")]);
    }

    #[test]
    fn the_latest_succeeded_backup_is_kept_past_retention_days() {
        let backups = [
            backup("old", JobStatus::Succeeded, 0),
            backup("older", JobStatus::Succeeded, -1),
        ];
        assert_eq!(expirable(&backups, &DAYS_30, at(400)), [job("older")]);
    }

    #[test]
    fn a_partial_latest_does_not_take_the_place_of_the_latest_succeeded() {
        let backups = [
            backup("s", JobStatus::Succeeded, 0),
            backup("p", JobStatus::Partial, 1),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..DAYS_30
        };
        assert!(expirable(&backups, &policy, at(100)).is_empty());
    }

    #[test]
    fn a_held_backup_is_kept() {
        let mut held = backup("a", JobStatus::Succeeded, 0);
        held.held = true;
        let backups = [held, backup("b", JobStatus::Succeeded, 1)];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..DAYS_30
        };
        assert!(expirable(&backups, &policy, at(1)).is_empty());
    }

    #[test]
    fn nothing_expires_within_the_policy() {
        let backups = [
            backup("a", JobStatus::Succeeded, 0),
            backup("b", JobStatus::Succeeded, 10),
        ];
        assert!(expirable(&backups, &DAYS_30, at(29)).is_empty());
        assert_eq!(expirable(&backups, &DAYS_30, at(31)), [job("a")]);
    }
}
