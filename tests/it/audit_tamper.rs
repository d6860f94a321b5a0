//! Tamper evidence (issue 12, item 3): every event is hash-chained as it is appended, by PostgreSQL for
//! every writer; the SQL canonical encoding (RFC 8785) matches the Rust one on payloads of every shape; old
//! events get their chain from the migration; and verification names modified, removed, inserted and
//! reordered events.

use crate::support;

use listbackup_api::auth::Role;
use listbackup_projections::audit::event::{LoggedEvent, LOGGED_COLUMNS};
use rand::Rng;
use serde_json::{json, Map, Value};
use support::{TestApp, TestDatabase};

const INSERT_RAW: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata) VALUES ($1, $2, $3, 'Raw', '1.0', $4::text::json, $5::text::json)";

async fn logged(db: &tokio_postgres::Client, condition: &str) -> Vec<LoggedEvent> {
    db.query(
        &format!(
            "SELECT {LOGGED_COLUMNS} FROM events e WHERE {condition} ORDER BY e.global_position"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(LoggedEvent::from_row)
    .collect()
}

/// What PostgreSQL hashed, as text, for the event at `position`.
async fn sql_canonical(db: &tokio_postgres::Client, position: i64) -> String {
    db.query_one(
        "SELECT audit_canonical_event(aggregate_type, aggregate_id, event_id, event_type, event_version, \
           metadata, payload, global_position, recorded_at, sequence, transaction_id) \
         FROM events WHERE global_position = $1",
        &[&position],
    )
    .await
    .unwrap()
    .get(0)
}

/// Asserts that the Rust canonical encoding and hash agree with what PostgreSQL computed on insert.
async fn assert_rust_agrees(db: &tokio_postgres::Client, events: &[LoggedEvent]) {
    for event in events {
        let rust = String::from_utf8(event.canonical().unwrap()).unwrap();
        assert_eq!(
            rust,
            sql_canonical(db, event.position).await,
            "canonical encodings differ for payload {}",
            event.payload
        );
        assert_eq!(
            event.computed_hash().unwrap(),
            event.stated_hash().unwrap(),
            "hash of {}",
            event.payload
        );
    }
}

/// Payload texts as a writer might store them (json keeps the text as written, so every form matters).
const SHAPES: &[&str] = &[
    r#"{"b": 1, "a": 2}"#,
    r#"{"n": [0, -0, 1, -1, 2.50, 1E2, 1e21, 1e20, 1.5e-7, 1e-6, 0.000001, 123456789012345678, 9007199254740993, 0.1, 100.0, 5e-324, 1.7976931348623157e308, -1.25e+3, 3.0e0, 2587472703745439701]}"#,
    r#"{"s": "plain", "e": "caf\u00e9", "raw": "café", "emoji": "\ud83d\ude00", "raw_emoji": "😀"}"#,
    r#"{"esc": "quote \" backslash \\ slash \/ tab \t nl \n cr \r bs \b ff \f ctl \u001f del \u007f"}"#,
    r#"{"nul": "a\u0000b", "not_nul": "\\u0000", "both": "\\\u0000"}"#,
    r#"{"\ue000": 1, "\ud83d\ude00": 2, "\u20ac": 3, "a": 4, "é": 5, "\uffff": 6, "Z": 7}"#,
    r#"{"dup": 1, "dup": 2}"#,
    "{\n  \"pretty\" : [ 1 , 2 ] ,\n  \"x\" : { }\n}",
    r#"{"empty": {}, "list": [], "nested": [[[]], {"a": [null, true, false]}]}"#,
    r#"[1, "two", {"three": 3}]"#,
    r#""just a string""#,
    r#"42"#,
    r#"null"#,
];

#[tokio::test]
async fn the_sql_and_rust_canonical_encodings_agree_on_every_shape() {
    let db = TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let client = db.connect().await;
    for (i, shape) in SHAPES.iter().enumerate() {
        client
            .execute(
                INSERT_RAW,
                &[
                    &"source",
                    &format!("shape-{i}"),
                    &1i64,
                    shape,
                    &r#"{"accountId":"acme"}"#,
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("insert {shape}: {e}"));
    }
    let events = logged(&client, "e.aggregate_id LIKE 'shape-%'").await;
    assert_eq!(events.len(), SHAPES.len());
    assert_rust_agrees(&client, &events).await;
    // Spot checks of RFC 8785 itself, not just agreement.
    let numbers = sql_canonical(&client, events[1].position).await;
    assert!(
        numbers.contains(
            r#"[0,0,1,-1,2.5,100,1e+21,100000000000000000000,1.5e-7,0.000001,0.000001,123456789012345680,9007199254740992,0.1,100,5e-324,1.7976931348623157e+308,-1250,3,2587472703745440000]"#
        ),
        "{numbers}"
    );
    let keys = sql_canonical(&client, events[5].position).await;
    assert!(
        keys.contains("{\"Z\":7,\"a\":4,\"é\":5,\"€\":3,\"😀\":2,\"\u{e000}\":1,\"\u{ffff}\":6}"),
        "keys sorted by UTF-16 code units: {keys}"
    );

    // Random payloads as serde_json writes them (what postgres-es stores).
    let mut rng = rand::thread_rng();
    for i in 0..300 {
        let payload = random_value(&mut rng, 3);
        // Metadata are ids (no U+0000: the account index reads them with `->>`, which refuses it).
        let actor = random_string(&mut rng).replace('\u{0}', "");
        let metadata = json!({"accountId": "acme", "actor": format!("user:{actor}")});
        client
            .execute(
                INSERT_RAW,
                &[
                    &"job",
                    &format!("random-{i}"),
                    &1i64,
                    &payload.to_string(),
                    &metadata.to_string(),
                ],
            )
            .await
            .unwrap();
    }
    let events = logged(&client, "e.aggregate_id LIKE 'random-%'").await;
    assert_eq!(events.len(), 300);
    assert_rust_agrees(&client, &events).await;
}

fn random_string(rng: &mut impl Rng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "ß",
        "€", "\u{e000}", "\u{ffff}", "😀", "𝄞", "中", "\u{0}",
    ];
    (0..rng.gen_range(0..8))
        .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
        .collect()
}

fn random_number(rng: &mut impl Rng) -> Value {
    match rng.gen_range(0..5) {
        0 => json!(rng.gen::<i64>()),
        1 => json!(rng.gen::<u64>()),
        2 => json!(rng.gen_range(-1000..1000)),
        3 => json!(rng.gen::<f64>() * 10f64.powi(rng.gen_range(-30..30))),
        _ => json!(f64::from_bits(rng.gen::<u64>() & 0x7fef_ffff_ffff_ffff)),
    }
}

fn random_value(rng: &mut impl Rng, depth: u32) -> Value {
    match rng.gen_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => random_number(rng),
        3 => json!(random_string(rng)),
        4 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.gen_range(0..5) {
                let key = random_string(rng).replace('\u{0}', "");
                map.insert(key, random_value(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

#[tokio::test]
async fn events_recorded_before_the_chain_get_theirs_from_the_migration() {
    let db = TestDatabase::create().await;
    listbackup::migrate::run_through(&db.url, Some("0009_backup_runs"))
        .await
        .unwrap();
    let client = db.connect().await;
    let has_hash: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_name = 'events' AND column_name = 'hash')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!has_hash, "the database is as before the chain");
    for stream in ["old-1", "old-2"] {
        for sequence in 1..=3i64 {
            client
                .execute(
                    INSERT_RAW,
                    &[
                        &"source",
                        &stream,
                        &sequence,
                        &format!(r#"{{"Raw": {{"n": {sequence}, "x": 1.50}}}}"#),
                        &r#"{"accountId":"acme","actor":"system"}"#,
                    ],
                )
                .await
                .unwrap();
        }
    }
    let applied = listbackup::migrate::run(&db.url).await.unwrap();
    assert!(applied.contains(&"0010_audit_hash_chain".to_owned()));

    let events = logged(&client, "true").await;
    assert_eq!(events.len(), 6);
    assert_rust_agrees(&client, &events).await;
    for stream in ["old-1", "old-2"] {
        let chain: Vec<&LoggedEvent> = events.iter().filter(|e| e.aggregate_id == stream).collect();
        assert_eq!(chain[0].previous_hash, "0".repeat(64));
        assert_eq!(chain[1].previous_hash, chain[0].hash);
        assert_eq!(chain[2].previous_hash, chain[1].hash);
    }
    // And the chain goes on for events appended after the migration.
    client
        .execute(
            INSERT_RAW,
            &[
                &"source",
                &"old-1",
                &4i64,
                &r#"{"Raw": {}}"#,
                &r#"{"accountId":"acme"}"#,
            ],
        )
        .await
        .unwrap();
    let old1 = logged(&client, "e.aggregate_id = 'old-1'").await;
    assert_eq!(old1[3].previous_hash, old1[2].hash);
    assert_rust_agrees(&client, &old1).await;
    // A stream cannot skip a sequence: its chain would have no link.
    let skipped = client
        .execute(INSERT_RAW, &[&"source", &"old-1", &9i64, &"{}", &"{}"])
        .await;
    assert!(
        skipped.is_err(),
        "an event must follow its stream's last one"
    );
}

async fn connection_with_renames(app: &TestApp, token: &str, renames: usize) -> String {
    let created = app
        .create_stripe_connection(token, "Stripe", "sk_test_1")
        .await;
    let id = created["connectionId"].as_str().unwrap().to_owned();
    for n in 0..renames {
        let response = app
            .put(
                &format!("/connections/{id}"),
                token,
                &json!({"name": format!("Stripe {n}")}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    id
}

async fn verify_report(app: &TestApp, token: &str) -> Value {
    let response = app.get("/audit/verify", token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn findings_of(report: &Value, stream: &str) -> Vec<(String, i64)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["aggregateId"] == stream)
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["sequence"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn modified_removed_inserted_and_reordered_events_are_all_found() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let modified = connection_with_renames(&app, &owner, 3).await;
    let removed = connection_with_renames(&app, &owner, 3).await;
    let reordered = connection_with_renames(&app, &owner, 3).await;
    let inserted = connection_with_renames(&app, &owner, 3).await;
    let untouched = connection_with_renames(&app, &owner, 3).await;
    let other = app.owner("other");
    connection_with_renames(&app, &other, 2).await;

    let clean = verify_report(&app, &auditor).await;
    assert_eq!(clean["ok"], true, "{clean}");
    assert_eq!(clean["streams"], 5);
    assert_eq!(clean["events"], 20);
    assert_eq!(clean["accountId"], "acme");
    // Viewers and managers do not see the log.
    for role in [Role::Viewer, Role::Manager] {
        let response = app.get("/audit/verify", &app.token("acme", &[role])).await;
        assert_eq!(response.status(), 403);
    }

    // A superuser rewrites history behind the append-only trigger's back.
    let db = app.db.connect().await;
    db.batch_execute(&format!(
        "ALTER TABLE events DISABLE TRIGGER events_append_only;
         ALTER TABLE events DISABLE TRIGGER events_hash_chain;
         ALTER TABLE events DISABLE TRIGGER events_append_first;
         UPDATE events SET payload = '{{\"ConnectionRenamed\": {{\"name\": \"forged\"}}}}'
          WHERE aggregate_id = '{modified}' AND sequence = 3;
         DELETE FROM events WHERE aggregate_id = '{removed}' AND sequence = 2;
         UPDATE events SET sequence = 1000 WHERE aggregate_id = '{reordered}' AND sequence = 2;
         UPDATE events SET sequence = 2 WHERE aggregate_id = '{reordered}' AND sequence = 3;
         UPDATE events SET sequence = 3 WHERE aggregate_id = '{reordered}' AND sequence = 1000;
         UPDATE events SET sequence = sequence + 10 WHERE aggregate_id = '{inserted}' AND sequence >= 3;
         UPDATE events SET sequence = sequence - 9 WHERE aggregate_id = '{inserted}' AND sequence >= 13;
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                             metadata, previous_hash, hash)
           SELECT 'connection', '{inserted}', 3, 'ConnectionRenamed', '1.0',
                  '{{\"ConnectionRenamed\": {{\"name\": \"planted\"}}}}', metadata, hash, sha256(hash)
             FROM events WHERE aggregate_id = '{inserted}' AND sequence = 2;
         ALTER TABLE events ENABLE TRIGGER events_append_first;
         ALTER TABLE events ENABLE TRIGGER events_hash_chain;
         ALTER TABLE events ENABLE TRIGGER events_append_only;"
    ))
    .await
    .unwrap();

    let report = verify_report(&app, &auditor).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(
        findings_of(&report, &modified),
        [("modified".to_owned(), 3)],
        "{report}"
    );
    assert_eq!(
        findings_of(&report, &removed),
        [("removed".to_owned(), 3)],
        "{report}"
    );
    // Each of the two swapped events verifies as the other's place.
    assert_eq!(
        findings_of(&report, &reordered),
        [("reordered".to_owned(), 3), ("reordered".to_owned(), 2)],
        "{report}"
    );
    let planted = findings_of(&report, &inserted);
    assert!(planted.contains(&("inserted".to_owned(), 3)), "{report}");
    assert!(findings_of(&report, &untouched).is_empty(), "{report}");
    let detail = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["aggregateId"] == removed)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("event 2"), "{detail}");

    // Another account's log is untouched, and its report says so.
    let others = verify_report(&app, &app.token("other", &[Role::Auditor])).await;
    assert_eq!(others["ok"], true, "{others}");

    // The CLI checks the whole log (or one account) and fails when anything does not verify.
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
        command
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("RUST_LOG", "warn");
        command.output().unwrap()
    };
    let all = cli(&["audit", "verify"]);
    assert_eq!(all.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&all.stdout);
    assert!(
        printed.contains("Modified") && printed.contains(&modified),
        "{printed}"
    );
    assert!(
        printed.contains("Removed") && printed.contains(&removed),
        "{printed}"
    );
    assert!(
        printed.contains("Reordered") && printed.contains(&reordered),
        "{printed}"
    );
    assert!(
        printed.contains("Inserted") && printed.contains(&inserted),
        "{printed}"
    );
    let clean_account = cli(&["audit", "verify", "--account", "other"]);
    assert_eq!(
        clean_account.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean_account.stdout)
    );
    app.stop().await;
}
