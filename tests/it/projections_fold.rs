//! The read models' one fold, three ways: the live projector (batch by batch, rows loaded and written back),
//! the same log applied a second time from the start (every fold guarded by the row's version), and a
//! rebuild (the whole log folded in memory, rows written in bulk) give the same tables, row for row, over a
//! log that exercises every event the read models fold.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use listbackup_projections::Projector;
use serde_json::{json, Value};
use support::TestDatabase;

const TABLES: &[(&str, &str)] = &[
    ("read_connections", "connection_id"),
    ("read_sources", "source_id"),
    ("read_source_groups", "group_id"),
    ("read_source_group_members", "group_id, source_id"),
    ("read_jobs", "job_id"),
];

/// Every read-model row, as JSON, keyed by table and primary key.
async fn snapshot(db: &tokio_postgres::Client) -> Vec<(String, Value)> {
    let mut rows = Vec::new();
    for (table, key) in TABLES {
        for row in db
            .query(
                &format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {key}"),
                &[],
            )
            .await
            .unwrap()
        {
            rows.push((table.to_string(), row.get::<_, Value>(0)));
        }
    }
    rows
}

fn row<'a>(rows: &'a [(String, Value)], table: &str, key: &str, id: &str) -> &'a Value {
    rows.iter()
        .find(|(t, r)| t == table && r[key] == id)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no {table} row {id}"))
}

/// Events in log order, split into transactions, with their own recorded times.
struct Log {
    transactions: Vec<Vec<(String, String, Value, Value)>>,
}

impl Log {
    fn tx(&mut self, events: Vec<(&str, &str, Value)>) {
        self.tx_by(events, "user:alice");
    }

    fn tx_by(&mut self, events: Vec<(&str, &str, Value)>, actor: &str) {
        self.transactions.push(
            events
                .into_iter()
                .map(|(kind, id, payload)| {
                    (
                        kind.to_owned(),
                        id.to_owned(),
                        payload,
                        json!({"actor": actor, "accountId": "acme"}),
                    )
                })
                .collect(),
        );
    }
}

fn credential(fingerprint: &str) -> Value {
    json!({"keyId": "k1", "fingerprint": fingerprint})
}

fn varied_log(base: DateTime<Utc>) -> Log {
    let slot = |hours: i64| (base + Duration::hours(hours)).to_rfc3339();
    let daily = json!({"frequency": "daily", "time": "02:00", "timezone": "Europe/Paris"});
    let hourly = json!({"frequency": "hourly", "time": "00:15"});
    let mut log = Log {
        transactions: Vec::new(),
    };
    // Connections: API key, OAuth, deleted, another account's.
    log.tx(vec![
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c001",
            json!({"ConnectionCreated": {"connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "accountId": "acme",
            "platformId": "zendesk", "name": "Support", "authType": "api_key",
            "settings": {"subdomain": "acme"}, "credentialFields": ["apiToken", "email"],
            "credential": credential("f1")}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c002",
            json!({"ConnectionCreated": {"connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c002", "accountId": "acme",
            "platformId": "shopify", "name": "Shop", "authType": "oauth2", "settings": {},
            "credentialFields": ["accessToken"], "credential": credential("f2"),
            "externalAccount": {"id": "shop-1", "name": "Acme Shop"}}}),
        ),
    ]);
    log.tx(vec![
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c001",
            json!({"ConnectionRenamed": {"name": "Zendesk"}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c001",
            json!({"ConnectionTested": {"ok": true, "latencyMs": 42,
            "message": "ok", "checkedAt": slot(1)}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c003",
            json!({"ConnectionCreated": {"connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c003", "accountId": "globex",
            "platformId": "stripe", "name": "Payments", "authType": "api_key", "settings": {},
            "credentialFields": ["secretKey"], "credential": credential("f3")}}),
        ),
    ]);
    log.tx(vec![
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c001",
            json!({"CredentialsReplaced": {"settings": {"subdomain": "acme2"},
            "credentialFields": ["apiToken"], "credential": credential("f4")}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c001",
            json!({"ConnectionTested": {"ok": false, "latencyMs": 7,
            "message": "401", "checkedAt": slot(2)}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c002",
            json!({"TokenRefreshed": {"expiresAt": slot(3), "credential": credential("f5")}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c002",
            json!({"TokenRefreshFailed": {"reason": "timeout", "permanent": false}}),
        ),
    ]);
    log.tx(vec![
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c002",
            json!({"ConnectionReauthRequired": {"reason": "revoked"}}),
        ),
        (
            "connection",
            "0190f5c2-7d3e-7a11-8b2c-00000000c003",
            json!({"ConnectionDeleted": {}}),
        ),
    ]);
    log.tx(vec![(
        "connection",
        "0190f5c2-7d3e-7a11-8b2c-00000000c002",
        json!({"ConnectionReauthorized": {"settings": {"shop": "acme"}, "credentialFields": ["accessToken"],
            "credential": credential("f6")}}),
    )]);
    // Sources, with schedules, limits, pauses and slots.
    log.tx(vec![
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b001", json!({"SourceCreated": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001", "accountId": "acme",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "platformId": "zendesk", "name": "Tickets",
            "dataTypes": ["tickets", "users"], "schedule": daily, "retentionDays": 30,
            "incremental": true, "keepLast": 3}})),
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b002", json!({"SourceCreated": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b002", "accountId": "acme",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c002", "platformId": "shopify", "name": "Orders",
            "dataTypes": ["orders", "customers"], "schedule": hourly, "retentionDays": 7,
            "incremental": false}})),
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b003", json!({"SourceCreated": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b003", "accountId": "acme",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "platformId": "zendesk", "name": "Gone",
            "dataTypes": ["tickets"], "schedule": {"frequency": "manual"}, "retentionDays": 1, "incremental": false}})),
    ]);
    log.tx(vec![
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SourceUpdated": {"name": "Tickets!", "keepLast": 0, "retentionDays": 60}}),
        ),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a001", "trigger": "manual"}}),
        ),
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b003", json!({"SourceDeleted": {}})),
    ]);
    // Groups: members added, removed, a description cleared, a group deleted with its members.
    log.tx(vec![
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceGroupCreated": {"groupId": "0190f5c2-7d3e-7a11-8b2c-00000000d001", "accountId": "acme",
            "name": "All", "description": "everything"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceAddedToGroup": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceAddedToGroup": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b002"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceAddedToGroup": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b003"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d002",
            json!({"SourceGroupCreated": {"groupId": "0190f5c2-7d3e-7a11-8b2c-00000000d002", "accountId": "acme",
            "name": "Temp"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d002",
            json!({"SourceAddedToGroup": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001"}}),
        ),
    ]);
    log.tx(vec![
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceRemovedFromGroup": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b003"}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d001",
            json!({"SourceGroupUpdated": {"name": "Most", "description": null}}),
        ),
        (
            "source_group",
            "0190f5c2-7d3e-7a11-8b2c-00000000d002",
            json!({"SourceGroupDeleted": {"sourceIds": ["0190f5c2-7d3e-7a11-8b2c-00000000b001"]}}),
        ),
    ]);
    // Job j1: started, progress, one data type backed up and one failed: partial; then held, released,
    // expired and verified.
    log.tx(vec![
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"JobStarted": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a001", "accountId": "acme", "sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "platformId": "zendesk", "trigger": "manual", "attempt": 1,
            "worker": "worker:a", "dataTypes": ["tickets", "users"]}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"JobProgressed": {"dataTypesDone": 0, "dataTypesTotal": 2,
            "currentDataType": "tickets", "records": 10, "bytes": 1000}}),
        ),
    ]);
    log.tx(vec![
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a001", json!({"ResourceBackedUp": {"dataType": "tickets", "records": 20, "bytes": 2000,
            "sha256": "aa", "object": "tickets.jsonl.gz"}})),
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a001", json!({"ResourceBackupFailed": {"dataType": "users", "code": "FORBIDDEN",
            "message": "no scope", "retryable": false}})),
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a001", json!({"JobPartiallySucceeded": {"manifest": "m1", "manifestSha256": "mm1",
            "records": 20, "bytes": 2000, "failedDataTypes": [{"dataType": "users", "code": "FORBIDDEN",
            "message": "no scope", "retryable": false}]}})),
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b001", json!({"SyncFinished": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a001", "outcome": "partial"}})),
    ]);
    log.tx_by(
        vec![(
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"BackupHeld": {"reason": "litigation"}}),
        )],
        "user:bob",
    );
    log.tx(vec![
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"BackupHoldReleased": {}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"BackupExpired": {"files": 3, "bytes": 2100}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a001",
            json!({"BackupVerified": {"files": 3, "bytes": 2100}}),
        ),
    ]);
    // j2: a scheduled slot, a second attempt, success, corruption found, held. A slot skipped meanwhile.
    log.tx(vec![
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a002", "trigger": "schedule", "slot": slot(26)}}),
        ),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SyncSkipped": {"slot": slot(50), "activeJobId": "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            "reason": "job_in_progress"}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"JobStarted": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a002", "accountId": "acme", "sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "platformId": "zendesk", "trigger": "schedule", "attempt": 1,
            "worker": "worker:a", "dataTypes": ["tickets", "users"]}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"ResourceBackedUp": {"dataType": "tickets", "records": 5, "bytes": 50,
            "sha256": "bb", "object": "t"}}),
        ),
    ]);
    log.tx(vec![
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"JobAttemptStarted": {"attempt": 2, "worker": "worker:b"}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"ResourceBackedUp": {"dataType": "users", "records": 6, "bytes": 60,
            "sha256": "cc", "object": "u"}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"JobSucceeded": {"manifest": "m2", "manifestSha256": "mm2", "records": 11,
            "bytes": 110, "cursors": {"tickets": "x"}}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a002",
            json!({"BackupCorrupted": {"file": "u", "expected": "cc", "found": "missing"}}),
        ),
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a002", json!({"BackupHeld": {"reason": "audit"}})),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SyncFinished": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a002", "outcome": "succeeded"}}),
        ),
    ]);
    // s2: a retry of chosen data types that fails while queued; a group sync that is cancelled; a paused,
    // rescheduled and resumed source.
    log.tx(vec![
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a003", "trigger": "retry", "retryOf": "0190f5c2-7d3e-7a11-8b2c-00000000a000",
            "dataTypes": ["customers"]}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a003",
            json!({"JobFailed": {"code": "PLATFORM_ERROR", "message": "down", "retryable": true}}),
        ),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            json!({"SyncFinished": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a003", "outcome": "failed"}}),
        ),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a004", "trigger": "group", "groupId": "0190f5c2-7d3e-7a11-8b2c-00000000d001"}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a004",
            json!({"JobStarted": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a004", "accountId": "acme", "sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c002", "platformId": "shopify", "trigger": "group", "attempt": 1,
            "worker": "worker:a", "dataTypes": ["orders"]}}),
        ),
    ]);
    log.tx(vec![
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a004", json!({"JobCancelRequested": {}})),
        ("job", "0190f5c2-7d3e-7a11-8b2c-00000000a004", json!({"JobCancelled": {}})),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            json!({"SyncFinished": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a004", "outcome": "cancelled"}}),
        ),
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b002", json!({"SourcePaused": {}})),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            json!({"SourceUpdated": {"schedule": {"frequency": "weekly", "time": "03:00",
            "dayOfWeek": "monday"}, "incremental": true, "keepLast": 5}}),
        ),
    ]);
    log.tx(vec![
        ("source", "0190f5c2-7d3e-7a11-8b2c-00000000b002", json!({"SourceResumed": {}})),
        // A job whose queued row never was (no SyncRequested): kept visible by its JobStarted.
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a005",
            json!({"JobStarted": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a005", "accountId": "acme", "sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b002",
            "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c002", "platformId": "shopify", "trigger": "manual", "attempt": 1,
            "worker": "worker:c", "dataTypes": ["orders", "customers"]}}),
        ),
        (
            "job",
            "0190f5c2-7d3e-7a11-8b2c-00000000a005",
            json!({"JobProgressed": {"dataTypesDone": 1, "dataTypesTotal": 2,
            "records": 3, "bytes": 30}}),
        ),
        (
            "source",
            "0190f5c2-7d3e-7a11-8b2c-00000000b001",
            json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a006", "trigger": "manual"}}),
        ),
    ]);
    log
}

/// Appends transactions of the log, numbering each stream's events and giving each event its own time.
#[derive(Default)]
struct Appender {
    sequences: HashMap<(String, String), i64>,
    events: i64,
}

impl Appender {
    async fn append(
        &mut self,
        db: &tokio_postgres::Client,
        transaction: &[(String, String, Value, Value)],
        base: DateTime<Utc>,
    ) {
        let mut sql = String::from("BEGIN;");
        for (kind, id, payload, metadata) in transaction {
            let sequence = self
                .sequences
                .entry((kind.clone(), id.clone()))
                .or_default();
            *sequence += 1;
            self.events += 1;
            let event_type = payload.as_object().unwrap().keys().next().unwrap();
            let at = base + Duration::seconds(37 * self.events);
            sql.push_str(&format!(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                 payload, metadata, recorded_at) VALUES ('{kind}', '{id}', {sequence}, '{event_type}', '1.0', \
                 '{}', '{}', '{}');",
                payload.to_string().replace('\'', "''"),
                metadata,
                at.to_rfc3339()
            ));
        }
        sql.push_str("COMMIT;");
        db.batch_execute(&sql).await.unwrap();
    }
}

/// Catches the projector up until it has folded `expected` events (or 30 s have passed), and says how many
/// it folded: events stay unreadable while another transaction on the server is older than their commit.
async fn catch_up_to(projector: &Projector, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut folded = projector.catch_up().await.unwrap();
    while folded < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        folded += projector.catch_up().await.unwrap();
    }
    folded
}

#[tokio::test]
async fn the_live_projector_a_replay_and_a_rebuild_fold_the_same_rows() {
    let db = TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let pool = deadpool_postgres::Config {
        url: Some(db.url.clone()),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    let projector = Projector::new(pool.clone(), Arc::new(tokio::sync::Notify::new()));
    let client = db.connect().await;
    let base = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let log = varied_log(base);

    // Live: the log appended a transaction at a time, the projector catching up after every other one, so
    // its batches cut the log at different places and rows are loaded and written back between them.
    let mut appender = Appender::default();
    let mut folded = 0;
    for (i, transaction) in log.transactions.iter().enumerate() {
        appender.append(&client, transaction, base).await;
        if i % 2 == 1 || i + 1 == log.transactions.len() {
            folded += projector.catch_up().await.unwrap();
        }
    }
    let events: usize = log.transactions.iter().map(Vec::len).sum();
    // The projector reads only below the server's commit horizon, which an open transaction of another test
    // on the same server holds back: the rest of the log is folded once it passes.
    folded += catch_up_to(&projector, events - folded).await;
    assert_eq!(folded, events);
    let live = snapshot(&client).await;

    // What the fold must give, checked on the live tables (so the comparisons below compare real work).
    let j1 = row(
        &live,
        "read_jobs",
        "job_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000a001",
    );
    assert_eq!(j1["status"], "partial");
    assert_eq!(j1["error"]["code"], "FORBIDDEN");
    assert_eq!(j1["hold"], Value::Null, "released");
    assert_eq!(j1["expired_files"], 3);
    assert_eq!(j1["verification"]["status"], "verified");
    assert_eq!(j1["data_types"][0]["status"], "done");
    assert_eq!(j1["data_types"][1]["status"], "failed");
    assert_eq!(j1["progress"]["dataTypesDone"], 2);
    let j2 = row(
        &live,
        "read_jobs",
        "job_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000a002",
    );
    assert_eq!(
        (j2["status"].as_str(), j2["attempt"].as_i64()),
        (Some("succeeded"), Some(2))
    );
    assert_eq!(j2["hold"]["by"], "user:alice");
    assert_eq!(j2["verification"]["found"], "missing");
    assert_eq!(
        j2["data_types"][0]["status"], "pending",
        "earlier attempt's"
    );
    assert_eq!(j2["data_types"][1]["records"], 6);
    let j3 = row(
        &live,
        "read_jobs",
        "job_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000a003",
    );
    assert_eq!(
        (j3["status"].as_str(), j3["retry_of"].as_str()),
        (Some("failed"), Some("0190f5c2-7d3e-7a11-8b2c-00000000a000"))
    );
    assert_eq!(j3["data_types"][0]["name"], "customers");
    let j4 = row(
        &live,
        "read_jobs",
        "job_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000a004",
    );
    assert_eq!(
        (j4["status"].as_str(), j4["group_id"].as_str()),
        (
            Some("cancelled"),
            Some("0190f5c2-7d3e-7a11-8b2c-00000000d001")
        )
    );
    assert_eq!(
        row(
            &live,
            "read_jobs",
            "job_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000a005"
        )["progress"]["records"],
        3
    );
    assert_eq!(
        row(
            &live,
            "read_jobs",
            "job_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000a006"
        )["status"],
        "queued"
    );
    let s1 = row(
        &live,
        "read_sources",
        "source_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000b001",
    );
    assert_eq!(s1["last_job_id"], "0190f5c2-7d3e-7a11-8b2c-00000000a006");
    assert_eq!(s1["keep_last"], Value::Null, "keepLast 0 removes the limit");
    assert_eq!(s1["retention_days"], 60);
    assert_eq!(s1["last_skipped_slot"], s1["last_scheduled_slot"]);
    assert!(s1["next_scheduled_at"].is_string());
    let s2 = row(
        &live,
        "read_sources",
        "source_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000b002",
    );
    assert_eq!(
        (s2["status"].as_str(), s2["keep_last"].as_i64()),
        (Some("active"), Some(5))
    );
    assert!(s2["next_scheduled_at"].is_string(), "resumed: {s2}");
    assert_eq!(
        row(
            &live,
            "read_sources",
            "source_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000b003"
        )["status"],
        "deleted"
    );
    let c1 = row(
        &live,
        "read_connections",
        "connection_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000c001",
    );
    assert_eq!(
        (c1["name"].as_str(), c1["credential_fingerprint"].as_str()),
        (Some("Zendesk"), Some("f4"))
    );
    assert_eq!(c1["last_test"]["ok"], false);
    let c2 = row(
        &live,
        "read_connections",
        "connection_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000c002",
    );
    assert_eq!(c2["status"], "active");
    assert_eq!(
        c2["external_account"]["id"], "shop-1",
        "kept by a reauthorization that names none"
    );
    assert_eq!(
        row(
            &live,
            "read_connections",
            "connection_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000c003"
        )["status"],
        "deleted"
    );
    let g1 = row(
        &live,
        "read_source_groups",
        "group_id",
        "0190f5c2-7d3e-7a11-8b2c-00000000d001",
    );
    assert_eq!(
        (g1["name"].as_str(), &g1["description"]),
        (Some("Most"), &Value::Null)
    );
    assert_eq!(
        row(
            &live,
            "read_source_groups",
            "group_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000d002"
        )["status"],
        "deleted"
    );
    let members: Vec<(String, String)> = live
        .iter()
        .filter(|(t, _)| t == "read_source_group_members")
        .map(|(_, r)| {
            (
                r["group_id"].as_str().unwrap().to_owned(),
                r["source_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [
            (
                "0190f5c2-7d3e-7a11-8b2c-00000000d001".into(),
                "0190f5c2-7d3e-7a11-8b2c-00000000b001".into()
            ),
            (
                "0190f5c2-7d3e-7a11-8b2c-00000000d001".into(),
                "0190f5c2-7d3e-7a11-8b2c-00000000b002".into()
            )
        ]
    );

    // Replay: the whole log applied again from its start changes nothing.
    client
        .batch_execute(
            "UPDATE checkpoints SET transaction_id = '0', position = 0 WHERE name = 'projector'",
        )
        .await
        .unwrap();
    assert_eq!(catch_up_to(&projector, events).await, events);
    assert_eq!(snapshot(&client).await, live, "a replay changed rows");

    // Rebuild: the log folded in memory, the rows written in bulk.
    let rebuilt = listbackup_projections::rebuild::rebuild(&pool)
        .await
        .unwrap();
    assert_eq!(rebuilt.events, events);
    assert_eq!(snapshot(&client).await, live, "the rebuild differs");
}

/// Two projectors on one database (as two `listbackup serve` processes run them), catching up at the same
/// moments: the checkpoint moves by compare and set, so each event is applied by exactly one of them (their
/// counts add up to the log), and the rows are what a rebuild folds.
#[tokio::test]
async fn two_projectors_racing_apply_each_event_once() {
    let db = TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let pool = || {
        let pool = deadpool_postgres::Config {
            url: Some(db.url.clone()),
            ..Default::default()
        }
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .unwrap();
        pool.resize(2);
        pool
    };
    let (pool_a, pool_b) = (pool(), pool());
    let a = Projector::new(pool_a.clone(), Arc::new(tokio::sync::Notify::new()));
    let b = Projector::new(pool_b, Arc::new(tokio::sync::Notify::new()));
    let client = db.connect().await;
    let base = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let log = varied_log(base);
    let events: usize = log.transactions.iter().map(Vec::len).sum();

    let mut appender = Appender::default();
    let mut folded = 0;
    for transaction in &log.transactions {
        appender.append(&client, transaction, base).await;
        let (by_a, by_b) = tokio::join!(a.catch_up(), b.catch_up());
        folded += by_a.unwrap() + by_b.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while folded < events && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (by_a, by_b) = tokio::join!(a.catch_up(), b.catch_up());
        folded += by_a.unwrap() + by_b.unwrap();
    }
    assert_eq!(folded, events, "every event applied once, by one of them");
    let live = snapshot(&client).await;
    assert_eq!(
        row(
            &live,
            "read_jobs",
            "job_id",
            "0190f5c2-7d3e-7a11-8b2c-00000000a006"
        )["status"],
        "queued",
        "the last transaction is in"
    );
    listbackup_projections::rebuild::rebuild(&pool_a)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&client).await,
        live,
        "a rebuild folds the same rows"
    );
}
