//! What a process or a reader of the log stopped at the wrong moment leaves behind, where the write path
//! saves a statement or a WAL flush: a connection's creation writes its vault row in the statement of its
//! event, projectors move their shared checkpoint by compare and set instead of locking it, and leaders of
//! the log keep their position in memory between batches.

use crate::support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use listbackup_projections::event_log::{advance_checkpoint, read_after, Commit};
use listbackup_projections::{LogPosition, ReadError};
use listbackup_workers::log_follower::{Checkpoint, Handled, LogFollower};
use serde_json::{json, Value};
use support::{wait_until, TestApp, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// `listbackup serve` as a child process on `env`, and the base URL it serves on.
async fn spawn_serve(env: &[(String, String)]) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
    command
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("LISTBACKUP_BIND", "127.0.0.1:0")
        .env("LISTBACKUP_DB_POOL_SIZE", "8")
        .env("LISTBACKUP_DEMO", "false")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start listbackup serve");
    let port = Arc::new(Mutex::new(None));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn({
        let port = port.clone();
        async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "listbackup is serving" {
                    *port.lock().unwrap() = entry["fields"]["port"].as_u64();
                }
            }
        }
    });
    wait_until(
        Duration::from_secs(60),
        "the child service to serve",
        || {
            let port = port.clone();
            async move { port.lock().unwrap().is_some() }
        },
    )
    .await;
    let port = port.lock().unwrap().unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

/// A process killed while its creating statement (the event and the vault's row) waits to commit: neither a
/// connection nor a secret is left, and the client's retry with the same `Idempotency-Key` creates it once.
#[tokio::test]
async fn a_crash_before_the_creation_commits_leaves_nothing_and_the_retry_creates_it() {
    let env = Arc::new(Mutex::new(Vec::new()));
    let app = TestApp::spawn_with(|values| {
        *env.lock().unwrap() = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    })
    .await;
    let env = env.lock().unwrap().clone();
    let token = app.owner("acme");
    let db = app.db.connect().await;
    let (mut child, child_url) = spawn_serve(&env).await;

    // Appends wait behind this lock (reads do not): the child's request stops right before its event.
    let mut locker = app.db.connect().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let body = json!({"platformId": "stripe", "name": "Crash", "credentials": {"secretKey": "sk_test_crash"}});
    let request = tokio::spawn({
        let (http, token, body) = (app.http.clone(), token.clone(), body.clone());
        async move {
            http.post(format!("{child_url}/connections"))
                .bearer_auth(token)
                .header("Idempotency-Key", "crash-1")
                .json(&body)
                .send()
                .await
        }
    });
    let blocked_pid = Arc::new(Mutex::new(None::<i32>));
    wait_until(
        Duration::from_secs(30),
        "the creating statement waiting",
        || {
            let (db, blocked_pid) = (&db, blocked_pid.clone());
            async move {
                let sealed: i64 = db
                    .query_one(
                        "SELECT count(*) FROM credential_vault WHERE account_id = 'acme'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                let waiting = db
                    .query_opt(
                        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass \
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        &[],
                    )
                    .await
                    .unwrap()
                    .map(|row| row.get::<_, i32>(0));
                *blocked_pid.lock().unwrap() = waiting;
                // The secret is written by the waiting statement itself: nothing of it is visible.
                assert_eq!(sealed, 0, "the secret is stored before its event commits");
                waiting.is_some()
            }
        },
    )
    .await;
    let blocked_pid = blocked_pid.lock().unwrap().unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(
        request.await.unwrap().is_err(),
        "the killed process never answered"
    );
    lock.rollback().await.unwrap();
    // Its session ends once the insert returns into a closed connection: the transaction never commits.
    wait_until(
        Duration::from_secs(30),
        "the dead process's session to end",
        || async {
            db.query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1",
                &[&blocked_pid],
            )
            .await
            .unwrap()
            .is_none()
        },
    )
    .await;

    let secrets: i64 = db
        .query_one("SELECT count(*) FROM credential_vault", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(secrets, 0, "no secret was left behind");
    let events: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0, "no event was committed");
    let listed: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(listed["connections"], json!([]), "no connection is visible");

    let retry = || {
        app.http
            .post(app.url("/connections"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "crash-1")
            .json(&body)
            .send()
    };
    // The dead request's claim on the key holds for two minutes (its process may still be working)...
    assert_eq!(retry().await.unwrap().status(), 409);
    // ...then a retry takes it over: the two minutes, passed.
    db.execute(
        "UPDATE idempotency_keys SET created_at = created_at - interval '3 minutes' WHERE key = 'crash-1'",
        &[],
    )
    .await
    .unwrap();
    let created = retry().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["connectionId"].as_str().unwrap().to_owned();
    let replayed = retry().await.unwrap();
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed["connectionId"], json!(id));
    let listed: Value = app.get("/connections", &token).await.json().await.unwrap();
    let ids: Vec<&str> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connectionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "exactly one connection");
    let sealed: Vec<String> = db
        .query("SELECT connection_id FROM credential_vault", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        sealed,
        [id],
        "the created connection's secret, and no other"
    );
    app.stop().await;
}

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     VALUES ('test', $1, 1, 'Happened', '1.0', '{\"Happened\":{}}', '{\"accountId\":\"acme\"}')";

/// Appends `n` events, one transaction each, and returns their aggregate ids in log order.
async fn append(db: &tokio_postgres::Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        db.execute(INSERT_EVENT, &[&id]).await.unwrap();
        ids.push(id);
    }
    ids
}

/// A leader of the log (as the relay and the sagas are) keeps its position in memory between batches and
/// reads its checkpoint only when it takes the lead: stopped and started again, it resumes from the stored
/// checkpoint, and has handled every event once, in log order. A stale position never moves the checkpoint.
#[tokio::test]
async fn a_log_follower_resumes_from_its_checkpoint_without_gaps_or_duplicates() {
    const NAME: &str = "test-follower";
    const LIMIT: i64 = 2;
    let db = TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    // A pool of its own for each run, as each process has: the leader's lock dies with its sessions.
    let pool = || process_pool(&db.url);
    let client = db.connect().await;
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let lock = rand_lock();
    let run = |shutdown: CancellationToken| {
        let (pool, handled) = (pool(), handled.clone());
        tokio::spawn(async move {
            let follower = LogFollower::new(pool.clone(), lock, "test follower", NAME);
            follower
                .run(
                    shutdown,
                    || async { Ok::<(), ReadError>(()) },
                    |at: Checkpoint| {
                        let (pool, handled) = (pool.clone(), handled.clone());
                        async move {
                            let client = pool.get().await?;
                            let events = read_after(&client, at.handled, LIMIT, 0).await?;
                            let outcome = Handled::of(&events, LIMIT);
                            if let Some(last) = outcome.last {
                                handled
                                    .lock()
                                    .unwrap()
                                    .extend(events.iter().map(|e| e.aggregate_id.clone()));
                                if !advance_checkpoint(
                                    &client,
                                    NAME,
                                    at.stored,
                                    last,
                                    Commit::Synchronous,
                                )
                                .await?
                                {
                                    return Err(ReadError::CheckpointMoved {
                                        name: NAME.to_owned(),
                                    });
                                }
                                return Ok(outcome.stored());
                            }
                            Ok(outcome)
                        }
                    },
                )
                .await
        })
    };
    let handled_all = |expected: Vec<String>| {
        let handled = handled.clone();
        async move {
            wait_until(Duration::from_secs(30), "every event to be handled", || {
                let (handled, expected) = (handled.clone(), expected.clone());
                async move { handled.lock().unwrap().len() >= expected.len() }
            })
            .await;
            assert_eq!(
                *handled.lock().unwrap(),
                expected,
                "every event once, in log order"
            );
        }
    };

    let mut logged = append(&client, 5).await;
    let shutdown = CancellationToken::new();
    let first = run(shutdown.clone());
    handled_all(logged.clone()).await;
    // More while it runs: a batch that was not full left it waiting, and the poll wakes it.
    logged.extend(append(&client, 3).await);
    handled_all(logged.clone()).await;
    shutdown.cancel();
    first.await.unwrap();

    // Events appended while it is stopped are handled after the restart, and none before them again.
    logged.extend(append(&client, 3).await);
    let shutdown = CancellationToken::new();
    let second = run(shutdown.clone());
    handled_all(logged.clone()).await;
    shutdown.cancel();
    second.await.unwrap();

    // A leader whose position is stale (another one moved the checkpoint meanwhile) cannot move it.
    let row = client
        .query_one(
            "SELECT transaction_id::text, position FROM checkpoints WHERE name = $1",
            &[&NAME],
        )
        .await
        .unwrap();
    let stored = LogPosition {
        transaction_id: row.get::<_, String>(0).parse().unwrap(),
        global_position: row.get(1),
    };
    let stale = LogPosition::default();
    let pool_client = pool().get().await.unwrap();
    assert!(
        !advance_checkpoint(&pool_client, NAME, stale, stale, Commit::Synchronous)
            .await
            .unwrap(),
        "a stale position is refused"
    );
    let position: i64 = client
        .query_one("SELECT position FROM checkpoints WHERE name = $1", &[&NAME])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        position, stored.global_position,
        "the checkpoint did not move back"
    );
}

/// A follower whose batches store nothing (the relay, the sagas, and the others on batches that do not
/// concern them) has its position stored by the follower itself: not after every batch, but when it is due
/// (also while idle) and when it stops. A crash between two stores makes it read again what it read since
/// the last one: at least once, never a gap.
#[tokio::test]
async fn a_log_follower_stores_positions_its_batches_did_not_when_due_and_when_it_stops() {
    const NAME: &str = "test-lazy-follower";
    const LIMIT: i64 = 2;
    let db = TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let pool = || process_pool(&db.url);
    let client = db.connect().await;
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let lock = rand_lock();
    let run = |shutdown: CancellationToken, every: Duration| {
        let (pool, handled) = (pool(), handled.clone());
        tokio::spawn(async move {
            let follower =
                LogFollower::new(pool.clone(), lock, "lazy follower", NAME).storing_every(every);
            follower
                .run(
                    shutdown,
                    || async { Ok::<(), ReadError>(()) },
                    |at: Checkpoint| {
                        let (pool, handled) = (pool.clone(), handled.clone());
                        async move {
                            let client = pool.get().await?;
                            let events = read_after(&client, at.handled, LIMIT, 0).await?;
                            handled
                                .lock()
                                .unwrap()
                                .extend(events.iter().map(|e| e.aggregate_id.clone()));
                            Ok(Handled::of(&events, LIMIT))
                        }
                    },
                )
                .await
        })
    };
    let stored = || async {
        client
            .query_one("SELECT position FROM checkpoints WHERE name = $1", &[&NAME])
            .await
            .map(|row| row.get::<_, i64>(0))
            .unwrap_or(0)
    };
    let last_position = || async {
        client
            .query_one("SELECT max(global_position) FROM events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let handled_len = |n: usize| {
        let handled = handled.clone();
        async move {
            wait_until(Duration::from_secs(30), "the events to be handled", || {
                let handled = handled.clone();
                async move { handled.lock().unwrap().len() >= n }
            })
            .await;
        }
    };
    let hour = Duration::from_secs(3600);

    // Not due: every event is handled, the checkpoint is not stored until the follower stops.
    let mut logged = append(&client, 5).await;
    let shutdown = CancellationToken::new();
    let first = run(shutdown.clone(), hour);
    handled_len(5).await;
    assert_eq!(stored().await, 0, "nothing stored before it is due");
    shutdown.cancel();
    first.await.unwrap();
    assert_eq!(
        stored().await,
        last_position().await,
        "stored when it stopped"
    );
    assert_eq!(*handled.lock().unwrap(), logged);

    // A crash (the task and its sessions dropped, nothing stored): the next leader reads those events again.
    let crashed = append(&client, 3).await;
    logged.extend(crashed.clone());
    let second = run(CancellationToken::new(), hour);
    handled_len(8).await;
    second.abort();
    let _ = second.await;
    let shutdown = CancellationToken::new();
    let third = run(shutdown.clone(), hour);
    handled_len(11).await;
    logged.extend(crashed);
    assert_eq!(
        *handled.lock().unwrap(),
        logged,
        "what was read since the last store is read again, in order; nothing skipped"
    );

    // Due often: stored while the follower idles, without stopping it.
    shutdown.cancel();
    third.await.unwrap();
    let shutdown = CancellationToken::new();
    let fourth = run(shutdown.clone(), Duration::from_millis(50));
    append(&client, 3).await;
    let target = last_position().await;
    wait_until(
        Duration::from_secs(30),
        "the idle follower to store",
        || async { stored().await >= target },
    )
    .await;
    assert_eq!(handled.lock().unwrap().len(), 14);
    shutdown.cancel();
    fourth.await.unwrap();
}

/// A pool of 3 on `url`, as one process of the service has: a leader's advisory lock dies with its sessions.
fn process_pool(url: &str) -> deadpool_postgres::Pool {
    let pool = deadpool_postgres::Config {
        url: Some(url.to_owned()),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    pool.resize(3);
    pool
}

fn rand_lock() -> i64 {
    (uuid::Uuid::new_v4().as_u128() as i64) & i64::MAX
}
