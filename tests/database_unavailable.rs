//! A database that cannot serve a request now (every pooled connection busy) is the same answer on every route
//! (issue 11): 503 `UNAVAILABLE` with `Retry-After`, never a 500 after a long wait. Before, a sync answered 500
//! after 10 s while reads answered 503.

// Its own test binary, not a module of `tests/it`: it holds an ACCESS EXCLUSIVE lock for up to a minute, and
// PostgreSQL gives such a transaction an id (the lock is WAL-logged), which holds back the commit horizon of the
// whole server; tests running beside it in one binary would see their read models wait. Cargo runs test
// binaries one after the other, so here it runs alone.
#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::TestApp;

#[tokio::test]
async fn an_exhausted_pool_is_a_503_with_retry_after_on_commands_and_reads() {
    // Small pools, and a short wait for a connection.
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_DB_POOL_SIZE".into(), "8".into());
        values.insert("LISTBACKUP_DB_POOL_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let token = app.owner("acme");
    let connection = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let response = app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection["connectionId"], "name": "Stripe", "dataTypes": ["customers"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: serde_json::Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap().to_owned();

    // Someone holds the event table and the read models: the first requests to need them wait with the pools'
    // connections, and every later one finds no connection free.
    let holder = app.db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE events, read_sources IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Requests that get a connection wait on the lock, holding it; once every connection is taken (by them
    // or by the service's own background work, which waits on the lock too), a request gets a 503 at once.
    // A probe that got a connection is left waiting and the next one tried.
    for (what, sync) in [("a sync", true), ("a read", false)] {
        let found = std::sync::Arc::new(std::sync::Mutex::new(None));
        support::wait_until(
            Duration::from_secs(60),
            &format!("{what} to be answered 503"),
            || {
                let (found, http, token) = (found.clone(), app.http.clone(), token.clone());
                let url = if sync {
                    app.url(&format!("/sources/{source_id}/sync"))
                } else {
                    app.url(&format!("/sources/{source_id}"))
                };
                async move {
                    let request = if sync {
                        http.post(url).json(&json!({}))
                    } else {
                        http.get(url)
                    };
                    let sent = request.bearer_auth(&token).send();
                    let response = match tokio::time::timeout(Duration::from_secs(5), sent).await {
                        Ok(response) => response.unwrap(),
                        // It got a connection and waits on the lock: one connection fewer for the next probe.
                        Err(_) => return false,
                    };
                    let status = response.status().as_u16();
                    assert_ne!(status, 500, "never a 500 for a busy database");
                    if status != 503 {
                        return false;
                    }
                    let retry_after = response.headers().get("retry-after").cloned();
                    let problem: serde_json::Value = response.json().await.unwrap();
                    *found.lock().unwrap() = Some((retry_after, problem));
                    true
                }
            },
        )
        .await;
        let (retry_after, problem) = found.lock().unwrap().take().unwrap();
        assert_eq!(problem["code"], "UNAVAILABLE", "{what}: {problem}");
        assert_eq!(problem["status"], 503, "{what}: {problem}");
        assert!(retry_after.is_some(), "{what}: a 503 says when to retry");
    }

    // Postgres is up, only every connection is busy: readiness says so (still 503, so that a load balancer
    // sends the traffic elsewhere meanwhile), and never that Postgres is unreachable.
    let answers = std::cell::RefCell::new(Vec::new());
    support::wait_until(
        Duration::from_secs(30),
        "readiness to say the pool is exhausted",
        || {
            let ready = app.http.get(app.url("/health/ready")).send();
            let answers = &answers;
            async move {
                let response = ready.await.unwrap();
                let status = response.status().as_u16();
                let problem: serde_json::Value = response.json().await.unwrap();
                let detail = problem["detail"].as_str().unwrap_or_default().to_owned();
                answers.borrow_mut().push((status, detail.clone()));
                status == 503 && detail.contains("pool is exhausted")
            }
        },
    )
    .await;
    let answers = answers.into_inner();
    assert!(
        answers
            .iter()
            .all(|(status, detail)| *status == 503 && !detail.contains("unreachable")),
        "{answers:?}"
    );

    // Released, the service serves again (the held requests end one way or the other meanwhile).
    holder.batch_execute("ROLLBACK").await.unwrap();
    let after = app.get("/sources", &token).await;
    assert_eq!(after.status(), 200);
    app.stop().await;
}
