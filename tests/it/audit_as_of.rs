//! As-of state (issue 12, item 4): `GET /{connections|sources|source-groups|jobs}/{id}?asOf=` returns the
//! resource as it stood at a time or a log position, folded by the projector's own code, with the version
//! it had; before it existed, 404.

use crate::support;

use listbackup_api::auth::Role;
use listbackup_projections::audit::LoggedEvent;
use serde_json::{json, Value};
use support::{problem_code, TestApp};

async fn history(app: &TestApp, token: &str, path: &str) -> Vec<LoggedEvent> {
    let response = app.get(&format!("{path}/history"), token).await;
    assert_eq!(response.status(), 200, "{path}/history");
    serde_json::from_value(response.json::<Value>().await.unwrap()["events"].clone()).unwrap()
}

/// `GET path?asOf=point`: (status, body, ETag).
async fn as_of(
    app: &TestApp,
    token: &str,
    path: &str,
    point: &str,
) -> (u16, Value, Option<String>) {
    let encoded = point.replace('+', "%2B").replace(':', "%3A");
    let response = app.get(&format!("{path}?asOf={encoded}"), token).await;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), etag)
}

#[tokio::test]
async fn a_source_as_it_stood_at_each_point_of_its_history() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let connection = app
        .create_stripe_connection(&owner, "Stripe", "sk_test_1")
        .await;
    let c = connection["connectionId"].as_str().unwrap().to_owned();
    let created = app
        .post(
            "/sources",
            &owner,
            &json!({"connectionId": c, "name": "nightly"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let s = created.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/sources/{s}");
    assert_eq!(
        app.put(&path, &owner, &json!({"name": "nightly v2"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.put(&path, &owner, &json!({"status": "paused"}))
            .await
            .status(),
        200
    );
    let events = history(&app, &auditor, &path).await;
    assert_eq!(events.len(), 3);

    let (status, then, etag) = as_of(&app, &auditor, &path, &events[0].position.to_string()).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(
        (
            then["name"].as_str(),
            then["status"].as_str(),
            then["version"].as_i64()
        ),
        (Some("nightly"), Some("active"), Some(1))
    );
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let (_, then, _) = as_of(&app, &auditor, &path, &events[1].position.to_string()).await;
    assert_eq!(
        (then["name"].as_str(), then["version"].as_i64()),
        (Some("nightly v2"), Some(2))
    );
    // The same point by time.
    let (status, by_time, etag) = as_of(&app, &owner, &path, &events[1].recorded_at).await;
    assert_eq!(status, 200);
    assert_eq!(by_time, then);
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (_, then, _) = as_of(&app, &auditor, &path, &events[2].position.to_string()).await;
    assert_eq!(
        (then["status"].as_str(), then["version"].as_i64()),
        (Some("paused"), Some(3))
    );
    assert_eq!(
        then["nextSyncAt"],
        Value::Null,
        "a paused source has no next sync"
    );
    // What it is now is what the read model says.
    let now: Value = app.get(&path, &auditor).await.json().await.unwrap();
    assert_eq!(then, now);

    // Before it existed: by time, and at the connection's creation (an earlier position).
    let (status, _) = problem_code(
        app.get(&format!("{path}?asOf=2000-01-01T00:00:00Z"), &auditor)
            .await,
    )
    .await;
    assert_eq!(status, 404);
    let earlier = history(&app, &auditor, &format!("/connections/{c}")).await[0].position;
    let (status, _, _) = as_of(&app, &auditor, &path, &earlier.to_string()).await;
    assert_eq!(status, 404);

    // Bad points are a 400; looking back is for auditors and owners; another account sees nothing.
    for (point, why) in [
        ("yesterday", "RFC 3339"),
        ("999999999", "no event has this position"),
        ("-4", "RFC 3339"),
    ] {
        let (status, problem) =
            problem_code(app.get(&format!("{path}?asOf={point}"), &auditor).await).await;
        assert_eq!(status, 400, "{point}");
        assert_eq!(problem["errors"][0]["field"], "asOf");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    let viewer = app.token("acme", &[Role::Viewer]);
    assert_eq!(
        app.get(&format!("{path}?asOf={}", events[0].position), &viewer)
            .await
            .status(),
        403
    );
    assert_eq!(app.get(&path, &viewer).await.status(), 200);
    let stranger = app.token("other", &[Role::Auditor]);
    assert_eq!(
        app.get(&format!("{path}?asOf={}", events[0].position), &stranger)
            .await
            .status(),
        404
    );

    // A deleted source is gone now, but not from the past.
    assert_eq!(app.delete(&path, &owner).await.status(), 204);
    assert_eq!(app.get(&path, &auditor).await.status(), 404);
    let (status, then, _) = as_of(&app, &auditor, &path, &events[2].position.to_string()).await;
    assert_eq!((status, then["status"].as_str()), (200, Some("paused")));
    app.stop().await;
}

#[tokio::test]
async fn connections_groups_and_jobs_as_of_a_point_and_the_pool_left_clean() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let connection = app
        .create_stripe_connection(&owner, "Stripe", "sk_test_1")
        .await;
    let c = connection["connectionId"].as_str().unwrap().to_owned();
    let c_path = format!("/connections/{c}");
    assert_eq!(
        app.put(&c_path, &owner, &json!({"name": "Stripe live"}))
            .await
            .status(),
        200
    );
    let c_events = history(&app, &auditor, &c_path).await;
    let (_, then, etag) = as_of(&app, &auditor, &c_path, &c_events[0].position.to_string()).await;
    assert_eq!(
        (then["name"].as_str(), etag.as_deref()),
        (Some("Stripe"), Some("\"1\""))
    );
    let (_, then, _) = as_of(&app, &auditor, &c_path, &c_events[1].recorded_at).await;
    assert_eq!(then["name"], "Stripe live");

    let source = app
        .post(
            "/sources",
            &owner,
            &json!({"connectionId": c, "name": "nightly"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let s = source["sourceId"].as_str().unwrap().to_owned();
    let group = app
        .post("/source-groups", &owner, &json!({"name": "all"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let g = group["groupId"].as_str().unwrap().to_owned();
    let g_path = format!("/source-groups/{g}");
    let added = app
        .post(
            &format!("{g_path}/sources"),
            &owner,
            &json!({"sourceId": s}),
        )
        .await;
    assert!(added.status().is_success(), "{}", added.status());
    let g_events = history(&app, &auditor, &g_path).await;
    assert_eq!(g_events.len(), 2);
    let (_, empty, _) = as_of(&app, &auditor, &g_path, &g_events[0].position.to_string()).await;
    assert_eq!(
        (empty["sourceIds"].clone(), empty["sourceCount"].clone()),
        (json!([]), json!(0))
    );
    let (_, full, etag) = as_of(&app, &auditor, &g_path, &g_events[1].position.to_string()).await;
    assert_eq!(
        (full["sourceIds"].clone(), full["sourceCount"].clone()),
        (json!([s]), json!(1))
    );
    assert_eq!(etag.as_deref(), Some("\"2\""));

    // A job is born queued from its source's SyncRequested.
    let before_sync = history(&app, &auditor, &format!("/sources/{s}")).await[0].position;
    let sync = app
        .post(&format!("/sources/{s}/sync"), &owner, &json!({}))
        .await;
    assert_eq!(sync.status(), 202);
    let job = sync.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let j_path = format!("/jobs/{job}");
    let (status, _, _) = as_of(&app, &auditor, &j_path, &before_sync.to_string()).await;
    assert_eq!(status, 404, "no job before its sync was requested");
    let requested = history(&app, &auditor, &format!("/sources/{s}"))
        .await
        .pop()
        .unwrap();
    assert_eq!(requested.event_type, "SyncRequested");
    let (status, then, etag) =
        as_of(&app, &auditor, &j_path, &requested.position.to_string()).await;
    assert_eq!(
        (status, then["status"].as_str(), then["trigger"].as_str()),
        (200, Some("queued"), Some("manual"))
    );
    assert_eq!(
        etag.as_deref(),
        Some("\"0\""),
        "a queued job's stream has no event yet"
    );

    // Folds run in rolled-back transactions on pooled connections: afterwards every connection of the
    // pool reads the real read models again (more rounds than the pool has connections).
    for round in 0..24 {
        let (_, old, _) = as_of(&app, &auditor, &c_path, &c_events[0].position.to_string()).await;
        assert_eq!(old["name"], "Stripe", "round {round}");
        let current: Value = app.get(&c_path, &auditor).await.json().await.unwrap();
        assert_eq!(current["name"], "Stripe live", "round {round}");
        let list: Value = app.get("/sources", &auditor).await.json().await.unwrap();
        assert_eq!(
            list["sources"].as_array().unwrap().len(),
            1,
            "round {round}"
        );
    }
    assert_eq!(
        app.put(&c_path, &owner, &json!({"name": "Stripe 3"}))
            .await
            .status(),
        200
    );
    let current: Value = app.get(&c_path, &auditor).await.json().await.unwrap();
    assert_eq!(
        current["name"], "Stripe 3",
        "the projector writes the real tables still"
    );
    app.stop().await;
}
