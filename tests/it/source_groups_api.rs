//! The source-groups API (issue 4): groups, membership, the membership saga driven by the event log, and
//! concurrent adds to one group.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{problem_code, wait_until, TestApp};

async fn connection(app: &TestApp, token: &str) -> String {
    app.create_stripe_connection(token, "Stripe", "sk_test_1")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn source(app: &TestApp, token: &str, connection_id: &str, name: &str) -> String {
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": name}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["sourceId"].as_str().unwrap().to_owned()
}

async fn get_group(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get(&format!("/source-groups/{id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn add(app: &TestApp, token: &str, group: &str, source: &str) -> reqwest::Response {
    app.post(
        &format!("/source-groups/{group}/sources"),
        token,
        &json!({"sourceId": source}),
    )
    .await
}

#[tokio::test]
async fn groups_are_created_listed_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let response = app
        .post(
            "/source-groups",
            &token,
            &json!({"name": " Finance ", "description": "books"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "Finance");
    assert_eq!(created["description"], "books");
    assert_eq!(created["sourceCount"], 0);
    assert_eq!(created["sourceIds"], json!([]));
    let id = created["groupId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/source-groups/{id}"));
    let second = app.create_group(&token, "Ops").await;
    app.create_group(&app.owner("globex"), "theirs").await;

    let listed: Value = app
        .get("/source-groups", &token)
        .await
        .json()
        .await
        .unwrap();
    let groups = listed["sourceGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["groupId"], second.as_str());
    assert_eq!(groups[1]["sourceCount"], 0);
    assert!(groups[1].get("sourceIds").is_none());
    assert_eq!(listed["nextCursor"], Value::Null);
    let page: Value = app
        .get("/source-groups?limit=1", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(page["nextCursor"].is_string());

    let updated: Value = app
        .put(
            &location,
            &token,
            &json!({"name": "Money", "description": null}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "Money");
    assert_eq!(updated["description"], Value::Null);
    assert_eq!(updated["version"], 2);
    let (status, problem) =
        problem_code(app.put(&location, &token, &json!({"colour": "red"})).await).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (400, Some("colour"))
    );
    let (status, _) = problem_code(
        app.post("/source-groups", &token, &json!({"name": ""}))
            .await,
    )
    .await;
    assert_eq!(status, 400);

    assert_eq!(app.get(&location, &app.owner("globex")).await.status(), 404);
    assert_eq!(app.delete(&location, &token).await.status(), 204);
    assert_eq!(app.get(&location, &token).await.status(), 404);
    assert_eq!(app.delete(&location, &token).await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn membership_is_idempotent_and_limited_to_live_sources_of_the_account() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let s1 = source(&app, &token, &c, "one").await;
    let s2 = source(&app, &token, &c, "two").await;
    let g = app.create_group(&token, "g").await;
    let other_group = app.create_group(&token, "other").await;

    let first = add(&app, &token, &g, &s1).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["sourceIds"], json!([s1]));
    assert_eq!(first["version"], 2);
    // Adding twice records nothing.
    let again: Value = add(&app, &token, &g, &s1).await.json().await.unwrap();
    assert_eq!(again["version"], 2);
    assert_eq!(again["sourceCount"], 1);
    // A source may be in several groups.
    assert_eq!(add(&app, &token, &other_group, &s1).await.status(), 200);
    assert_eq!(add(&app, &token, &g, &s2).await.status(), 200);
    let view = get_group(&app, &token, &g).await;
    assert_eq!(view["sourceIds"], json!([s2, s1]));
    assert_eq!(view["sourceCount"], 2);

    let members: Value = app
        .get(&format!("/source-groups/{g}/sources"), &token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = members["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["two", "one"]);
    let filtered: Value = app
        .get(&format!("/sources?groupId={other_group}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["sources"].as_array().unwrap().len(), 1);

    // Another account's source, a missing one, a deleted one: 404.
    let other = app.owner("globex");
    let theirs = source(&app, &other, &connection(&app, &other).await, "theirs").await;
    let (status, _) = problem_code(add(&app, &token, &g, &theirs).await).await;
    assert_eq!(status, 404);
    let (status, _) =
        problem_code(add(&app, &token, &g, &uuid::Uuid::now_v7().to_string()).await).await;
    assert_eq!(status, 404);
    let s3 = source(&app, &token, &c, "three").await;
    assert_eq!(
        app.delete(&format!("/sources/{s3}"), &token).await.status(),
        204
    );
    let (status, _) = problem_code(add(&app, &token, &g, &s3).await).await;
    assert_eq!(status, 404);
    // And nobody else may add to this group.
    let (status, _) = problem_code(add(&app, &other, &g, &theirs).await).await;
    assert_eq!(status, 404);

    let remove = format!("/source-groups/{g}/sources/{s2}");
    assert_eq!(app.delete(&remove, &token).await.status(), 204);
    assert_eq!(app.delete(&remove, &token).await.status(), 404);
    let view = get_group(&app, &token, &g).await;
    assert_eq!(view["sourceIds"], json!([s1]));
    assert_eq!(
        app.get(
            &format!("/source-groups/{}/sources", uuid::Uuid::now_v7()),
            &token
        )
        .await
        .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_source_removes_it_from_its_groups_through_the_log() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let s = source(&app, &token, &c, "s").await;
    let kept = source(&app, &token, &c, "kept").await;
    let groups = [
        app.create_group(&token, "a").await,
        app.create_group(&token, "b").await,
    ];
    for g in &groups {
        add(&app, &token, g, &s).await;
        add(&app, &token, g, &kept).await;
    }
    assert_eq!(
        app.delete(&format!("/sources/{s}"), &token).await.status(),
        204
    );
    // The read side hides the deleted member at once…
    for g in &groups {
        let view = get_group(&app, &token, g).await;
        assert_eq!(view["sourceIds"], json!([kept]));
        assert_eq!(view["sourceCount"], 1);
    }
    // …and the saga records the removal on each group, caused by the deletion, as `system`.
    let db = app.db.connect().await;
    let deleted_event: uuid::Uuid = db
        .query_one(
            "SELECT event_id FROM events WHERE aggregate_id = $1 AND event_type = 'SourceDeleted'",
            &[&s],
        )
        .await
        .unwrap()
        .get(0);
    wait_until(
        Duration::from_secs(10),
        "the saga removes the source from both groups",
        || async {
            db.query(
                "SELECT 1 FROM events WHERE event_type = 'SourceRemovedFromGroup' \
               AND payload -> 'SourceRemovedFromGroup' ->> 'sourceId' = $1",
                &[&s],
            )
            .await
            .unwrap()
            .len()
                == 2
        },
    )
    .await;
    let rows = db
        .query(
            "SELECT aggregate_id, metadata::jsonb FROM events WHERE event_type = 'SourceRemovedFromGroup'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let metadata: Value = row.get(1);
        assert_eq!(metadata["actor"], "system");
        assert_eq!(metadata["accountId"], "acme");
        assert_eq!(metadata["causationId"], deleted_event.to_string());
    }
    // The groups' own streams moved (created, two adds, the removal), and the projection follows.
    wait_until(
        Duration::from_secs(10),
        "the removal is projected",
        || async { get_group(&app, &token, &groups[0]).await["version"] == 4 },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_group_drops_its_memberships_and_keeps_its_sources() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let s = source(&app, &token, &c, "s").await;
    let g = app.create_group(&token, "g").await;
    add(&app, &token, &g, &s).await;
    assert_eq!(
        app.delete(&format!("/source-groups/{g}"), &token)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.get(&format!("/sources/{s}"), &token).await.status(),
        200
    );
    let filtered: Value = app
        .get(&format!("/sources?groupId={g}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["sources"], json!([]));
    let db = app.db.connect().await;
    let left: i64 = db
        .query_one("SELECT count(*) FROM read_source_group_members", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_adds_to_one_group_all_land() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let mut sources = Vec::new();
    for i in 0..50 {
        sources.push(source(&app, &token, &c, &format!("s{i}")).await);
    }
    let g = app.create_group(&token, "busy").await;
    let responses =
        futures::future::join_all(sources.iter().map(|s| add(&app, &token, &g, s))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
    }
    let view = get_group(&app, &token, &g).await;
    assert_eq!(view["sourceCount"], 50);
    assert_eq!(view["version"], 51);
    let mut members: Vec<String> = serde_json::from_value(view["sourceIds"].clone()).unwrap();
    members.sort();
    sources.sort();
    assert_eq!(members, sources);
    let listed: Value = app
        .get("/source-groups", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sourceGroups"][0]["sourceCount"], 50);
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_reproduces_the_source_read_models() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let a = source(&app, &token, &c, "a").await;
    let b = source(&app, &token, &c, "b").await;
    app.put(
        &format!("/sources/{a}"),
        &token,
        &json!({"status": "paused", "retentionDays": 5}),
    )
    .await;
    let g = app.create_group(&token, "g").await;
    add(&app, &token, &g, &a).await;
    add(&app, &token, &g, &b).await;
    app.delete(&format!("/source-groups/{g}/sources/{b}"), &token)
        .await;
    let gone = app.create_group(&token, "gone").await;
    add(&app, &token, &gone, &a).await;
    app.delete(&format!("/source-groups/{gone}"), &token).await;
    app.delete(&format!("/sources/{b}"), &token).await;

    let db = app.db.connect().await;
    let dump = || async {
        let mut out = Vec::new();
        for table in [
            "read_sources",
            "read_source_groups",
            "read_source_group_members",
        ] {
            let rows = db
                .query(
                    &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"),
                    &[],
                )
                .await
                .unwrap();
            out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        out
    };
    let live = dump().await;
    assert!(live.len() >= 5);
    app.db.rebuild_projections().await;
    assert_eq!(dump().await, live);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_sources_and_groups() {
    let app = TestApp::spawn().await;
    let spec: Value = app.openapi().await;
    for (path, method) in [
        ("/sources", "post"),
        ("/sources", "get"),
        ("/sources/{id}", "put"),
        ("/sources/{id}", "delete"),
        ("/sources/{id}/test", "post"),
        ("/source-groups", "post"),
        ("/source-groups/{id}", "get"),
        ("/source-groups/{id}/sources", "post"),
        ("/source-groups/{id}/sources", "get"),
        ("/source-groups/{id}/sources/{sourceId}", "delete"),
    ] {
        assert!(spec["paths"][path][method].is_object(), "{method} {path}");
    }
    for schema in ["SourceView", "SourceGroupView", "CreateSource"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    app.stop().await;
}
