//! Recomputing the hash chains of the stored log (`listbackup audit verify`, `GET /audit/verify`).
//!
//! Each stream is walked in append order (`global_position`, which within a stream is sequence order as
//! appended) and each event's hash recomputed from its fields and the previous event's stored hash. What
//! does not verify is classified by what would make it verify:
//!
//! * **modified**: at its place in the stream, but its content no longer gives its hash (the next event
//!   still follows its stored hash);
//! * **inserted**: not part of the chain at all: the next event follows the one before it;
//! * **removed**: the stream skips sequences (an event before this one is missing);
//! * **reordered**: the event verifies as the event at another sequence (its sequence was changed, as
//!   when two events are swapped).
//!
//! After a finding the walk trusts the stored hash and goes on, so one tampering is reported once and
//! later ones are still found. Deleting the newest events of a stream leaves a shorter, valid chain: only
//! a copy taken before (a signed export, whose summary commits to every hash) shows that.

use deadpool_postgres::Object;
use futures::{pin_mut, TryStreamExt};
use serde::Serialize;

use super::event::{ChainHash, LoggedEvent, GENESIS, LOGGED_COLUMNS};
use crate::ReadError;

/// What kind of tampering a finding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    Modified,
    Removed,
    Inserted,
    Reordered,
}

/// One event that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainFinding {
    pub kind: FindingKind,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's sequence as stored now.
    pub sequence: i64,
    pub position: i64,
    pub event_id: uuid::Uuid,
    pub detail: String,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    /// True when every stream verified.
    pub ok: bool,
    /// The account verified; `null`: the whole log (CLI only).
    pub account_id: Option<String>,
    pub streams: u64,
    pub events: u64,
    /// Stream by stream (in aggregate type and id order), in stream order; at most
    /// [`MAX_FINDINGS`], with `findingsTotal` counting them all.
    pub findings: Vec<ChainFinding>,
    pub findings_total: u64,
}

/// How many findings a report lists.
pub const MAX_FINDINGS: usize = 1000;

fn verifies_as(event: &LoggedEvent, previous: &ChainHash, sequence: i64) -> bool {
    let Some(stated) = event.stated_hash() else {
        return false;
    };
    if event.sequence == sequence {
        return event.hash_after(previous).ok() == Some(stated);
    }
    let mut moved = event.clone();
    moved.sequence = sequence;
    moved.hash_after(previous).ok() == Some(stated)
}

struct Walk {
    stream: (String, String),
    previous: ChainHash,
    expected: i64,
    /// At its expected place but not verifying: modified or inserted, told by the next event.
    suspect: Option<LoggedEvent>,
}

#[derive(Default)]
struct Findings {
    listed: Vec<ChainFinding>,
    total: u64,
}

impl Findings {
    fn push(&mut self, kind: FindingKind, event: &LoggedEvent, detail: String) {
        self.total += 1;
        if self.listed.len() < MAX_FINDINGS {
            self.listed.push(ChainFinding {
                kind,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
                position: event.position,
                event_id: event.event_id,
                detail,
            });
        }
    }
}

impl Walk {
    fn new(event: &LoggedEvent) -> Self {
        Self {
            stream: (event.aggregate_type.clone(), event.aggregate_id.clone()),
            previous: GENESIS,
            // A stream starts at sequence 1 (0 is allowed by the table; postgres-es starts at 1).
            expected: if event.sequence == 0 { 0 } else { 1 },
            suspect: None,
        }
    }

    fn step(&mut self, event: LoggedEvent, findings: &mut Findings) {
        let stated = event.stated_hash().unwrap_or(GENESIS);
        if let Some(suspect) = self.suspect.take() {
            if verifies_as(&event, &self.previous, suspect.sequence) {
                findings.push(
                    FindingKind::Inserted,
                    &suspect,
                    "not part of the chain: the next event follows the one before it".into(),
                );
                self.previous = stated;
                self.expected = event.sequence + 1;
                return;
            }
            findings.push(
                FindingKind::Modified,
                &suspect,
                "its content no longer gives its hash".into(),
            );
            self.previous = suspect.stated_hash().unwrap_or(GENESIS);
            self.expected = suspect.sequence + 1;
        }
        let expected = self.expected;
        if event.sequence == expected {
            if verifies_as(&event, &self.previous, expected) {
                self.previous = stated;
                self.expected += 1;
            } else {
                self.suspect = Some(event);
            }
            return;
        }
        if verifies_as(&event, &self.previous, expected) {
            findings.push(
                FindingKind::Reordered,
                &event,
                format!(
                    "appended as event {expected}, now stored as event {}",
                    event.sequence
                ),
            );
            self.previous = stated;
            self.expected = expected + 1;
            return;
        }
        if event.sequence > expected {
            let missing = if event.sequence - 1 == expected {
                format!("event {expected}")
            } else {
                format!("events {expected} to {}", event.sequence - 1)
            };
            findings.push(
                FindingKind::Removed,
                &event,
                format!("{missing} of the stream, before this one, are missing"),
            );
        } else {
            findings.push(
                FindingKind::Inserted,
                &event,
                format!(
                    "sequence {} comes again after the stream reached {}",
                    event.sequence,
                    expected - 1
                ),
            );
        }
        self.previous = stated;
        self.expected = event.sequence + 1;
    }

    fn finish(mut self, findings: &mut Findings) {
        if let Some(suspect) = self.suspect.take() {
            findings.push(
                FindingKind::Modified,
                &suspect,
                "its content no longer gives its hash".into(),
            );
        }
    }
}

/// Recomputes every stream of `account_id` (`None`: every stream of the log) in one repeatable-read
/// snapshot, reading through a server-side portal 1,000 rows at a time: memory holds one batch and one
/// stream's state, whatever the size of the log.
pub async fn verify_chains(
    client: &mut Object,
    account_id: Option<&str>,
) -> Result<ChainReport, ReadError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let statement = tx
        .prepare(&format!(
            "SELECT {LOGGED_COLUMNS} FROM events e \
             WHERE $1::text IS NULL OR e.metadata ->> 'accountId' = $1 \
             ORDER BY e.aggregate_type, e.aggregate_id, e.global_position"
        ))
        .await?;
    let portal = tx.bind(&statement, &[&account_id]).await?;
    let mut findings = Findings::default();
    let mut walk: Option<Walk> = None;
    let (mut streams, mut events) = (0u64, 0u64);
    loop {
        let rows = tx.query_portal_raw(&portal, 1000).await?;
        pin_mut!(rows);
        let mut fetched = 0;
        while let Some(row) = rows.try_next().await? {
            fetched += 1;
            events += 1;
            let event = LoggedEvent::from_row(&row);
            let same = walk.as_ref().is_some_and(|w| {
                w.stream.0 == event.aggregate_type && w.stream.1 == event.aggregate_id
            });
            if !same {
                if let Some(done) = walk.take() {
                    done.finish(&mut findings);
                }
                streams += 1;
                walk = Some(Walk::new(&event));
            }
            if let Some(w) = walk.as_mut() {
                w.step(event, &mut findings);
            }
        }
        if fetched < 1000 {
            break;
        }
    }
    if let Some(done) = walk.take() {
        done.finish(&mut findings);
    }
    tx.commit().await?;
    Ok(ChainReport {
        ok: findings.total == 0,
        account_id: account_id.map(str::to_owned),
        streams,
        events,
        findings: findings.listed,
        findings_total: findings.total,
    })
}
