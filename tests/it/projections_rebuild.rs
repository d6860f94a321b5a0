//! Replay without a gap (issue 12, item 5): `listbackup projections rebuild` builds fresh read-model
//! tables while the live ones keep serving, and swaps them in one transaction: a list read all along never
//! shrinks, writes made meanwhile are kept, and the rebuilt tables are the live ones, indexes and all.

use crate::support;

use std::time::Duration;

use listbackup_api::auth::Role;
use serde_json::{json, Value};
use support::{wait_until, TestApp};

const TABLES: &[(&str, &str)] = &[
    ("read_connections", "connection_id"),
    ("read_sources", "source_id"),
    ("read_source_groups", "group_id"),
    ("read_source_group_members", "group_id, source_id"),
    ("read_jobs", "job_id"),
];

/// Every read-model row, as JSON, in key order.
async fn snapshot(db: &tokio_postgres::Client) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, key) in TABLES {
        for row in db
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {key}"),
                &[],
            )
            .await
            .unwrap()
        {
            rows.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    rows
}

/// Every index and constraint of the read models, by name and definition.
async fn schema(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT tablename || ' ' || indexname || ' ' || indexdef FROM pg_indexes \
         WHERE schemaname = 'public' AND tablename LIKE 'read\\_%' \
         UNION ALL SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid::regclass::text LIKE 'read\\_%' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn source_count(app: &TestApp, token: &str) -> usize {
    let mut total = 0;
    let mut query = "/sources?limit=200".to_owned();
    loop {
        let response = app.get(&query, token).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        total += page["sources"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("/sources?limit=200&cursor={cursor}"),
            None => return total,
        }
    }
}

#[tokio::test]
async fn a_rebuild_swaps_in_complete_tables_while_reads_and_writes_go_on() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let viewer = app.token("acme", &[Role::Viewer]);
    let c = app
        .create_stripe_connection(&owner, "Stripe", "sk_test_1")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = app
        .post("/source-groups", &owner, &json!({"name": "all"}))
        .await;
    let g = group.json::<Value>().await.unwrap()["groupId"]
        .as_str()
        .unwrap()
        .to_owned();
    const SOURCES: usize = 120;
    for n in 0..SOURCES {
        let created = app
            .post(
                "/sources",
                &owner,
                &json!({"connectionId": c, "name": format!("source {n}")}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let s = created.json::<Value>().await.unwrap()["sourceId"]
            .as_str()
            .unwrap()
            .to_owned();
        for version in 0..4 {
            let updated = app
                .put(
                    &format!("/sources/{s}"),
                    &owner,
                    &json!({"name": format!("source {n}.{version}")}),
                )
                .await;
            assert_eq!(updated.status(), 200);
        }
        if n % 3 == 0 {
            let added = app
                .post(
                    &format!("/source-groups/{g}/sources"),
                    &owner,
                    &json!({"sourceId": s}),
                )
                .await;
            assert!(added.status().is_success());
        }
    }
    // A longer log, so the rebuild takes a while: 10,000 renames of one more connection, appended straight
    // to the log (as any writer may), then projected by the live projector.
    let busy = app
        .create_stripe_connection(&owner, "Busy", "sk_test_2")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = app.db.connect().await;
    db.execute(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'connection', $1, n, 'ConnectionRenamed', '1.0', \
                json_build_object('ConnectionRenamed', json_build_object('name', 'Busy ' || n)), \
                '{\"accountId\": \"acme\", \"actor\": \"system\", \"requestId\": \"r\", \
                  \"correlationId\": \"r\", \"causationId\": \"r\"}' \
         FROM generate_series(2, 10001) n",
        &[&busy],
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(120),
        "the renames to be projected",
        || async {
            let view: Value = app
                .get(&format!("/connections/{busy}"), &viewer)
                .await
                .json()
                .await
                .unwrap();
            view["version"] == 10001
        },
    )
    .await;
    let schema_before = schema(&db).await;
    let events_before: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);

    // The rebuild runs as an operator would run it, beside the serving process.
    let started = std::time::Instant::now();
    let rebuild = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
        .args(["projections", "rebuild"])
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rebuild = tokio::spawn(rebuild.wait_with_output());

    // Meanwhile: reads never see fewer sources than were there, and writes keep landing.
    let mut reads = 0;
    let mut created_during = 0;
    let mut last_count = SOURCES;
    let mut slowest = Duration::ZERO;
    while !rebuild.is_finished() {
        let read_started = std::time::Instant::now();
        let count = source_count(&app, &viewer).await;
        slowest = slowest.max(read_started.elapsed());
        assert!(
            count >= last_count,
            "the list shrank from {last_count} to {count} during the rebuild"
        );
        last_count = count;
        let members: Value = app
            .get(&format!("/source-groups/{g}"), &viewer)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(members["sourceCount"], SOURCES.div_ceil(3), "{members}");
        reads += 1;
        if reads % 4 == 0 {
            let created = app
                .post(
                    "/sources",
                    &owner,
                    &json!({"connectionId": c, "name": format!("during {reads}")}),
                )
                .await;
            assert_eq!(created.status(), 201, "writes go on during a rebuild");
            created_during += 1;
        }
    }
    let output = rebuild.await.unwrap().unwrap();
    let took = started.elapsed();
    eprintln!("rebuild took {took:?}; {reads} read rounds, the slowest list read {slowest:?}");
    assert!(
        output.status.success(),
        "rebuild: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        reads >= 3,
        "the reads overlapped the rebuild ({reads} rounds)"
    );
    let folded: i64 = printed
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(folded >= events_before, "{printed}");

    // After the swap: every source (those written during the rebuild too), the same indexes and
    // constraints under the same names, no leftover schema, and the projector writing the new tables.
    assert_eq!(source_count(&app, &viewer).await, SOURCES + created_during);
    assert_eq!(schema(&db).await, schema_before);
    let leftovers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('listbackup_rebuild', 'listbackup_retired')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    let after = app
        .post(
            "/sources",
            &owner,
            &json!({"connectionId": c, "name": "after"}),
        )
        .await;
    assert_eq!(after.status(), 201);
    let after_id = after.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get(&format!("/sources/{after_id}"), &viewer)
            .await
            .status(),
        200
    );

    // The rebuilt tables are what the live projector had built: a second rebuild, with nothing else going
    // on, changes no row.
    wait_until(
        Duration::from_secs(10),
        "the projector to catch up",
        || async { source_count(&app, &viewer).await == SOURCES + created_during + 1 },
    )
    .await;
    let live = snapshot(&db).await;
    app.db.rebuild_projections().await;
    assert_eq!(snapshot(&db).await, live);
    app.stop().await;
}
