//! The REST contract across routes and resources (DESIGN §4, issue 11 §2 and §3):
//! - another account's resource is byte-for-byte the same 404 as a missing one, on every route. The walk is
//!   driven by the service's own OpenAPI document, so a route added later is walked too, or fails this test
//!   until it is classified here;
//! - one conflict policy for every resource: a stale `If-Match` is 412 `VERSION_CONFLICT`, whether seen before
//!   the write or lost in a race; without `If-Match` concurrent writes all land.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use support::backup::{stripe_source, sync, BackupApp};
use support::{problem_code, TestApp};

/// What a path parameter or a body field of a route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Connection,
    Source,
    SourceGroup,
    Job,
    Webhook,
}

/// One resource of each kind, by id.
type Owned = BTreeMap<Kind, String>;

/// Routes that name no resource of an account (lists, creations without ids, the catalog, operations, the
/// OAuth flow's start and callback, the account-wide event log): nothing of another account to find. A new
/// route must be listed here or be walked.
const NAMES_NO_RESOURCE: &[&str] = &[
    "GET /health/live",
    "GET /health/ready",
    "GET /platforms",
    "GET /platforms/{platformId}",
    "GET /connections",
    "POST /connections",
    "POST /connections/oauth/start",
    "GET /connections/oauth/callback",
    "GET /sources",
    "GET /source-groups",
    "POST /source-groups",
    "GET /jobs",
    "GET /events",
    "GET /events/export",
    "GET /audit/verify",
    "GET /webhooks",
    "POST /webhooks",
    "GET /.well-known/listbackup-audit-key",
    // The caller's own account (never walked: it would erase it).
    "POST /account/erase",
];

/// The body a route needs to get past its validation to the lookup; `{source}`, `{connection}`… stand for
/// an id of that kind (a body field that names a resource is walked like a path parameter).
fn body_for(route: &str) -> Option<Value> {
    Some(match route {
        "POST /sources" => json!({"connectionId": "{connection}", "name": "walk"}),
        "PUT /connections/{id}" | "PUT /sources/{id}" | "PUT /source-groups/{id}" => {
            json!({"name": "walk"})
        }
        "PUT /webhooks/{id}" => json!({"description": "walk"}),
        "POST /source-groups/{id}/sources" | "POST /jobs" => json!({"sourceId": "{source}"}),
        "POST /connections/{id}/reconnect" => json!({}),
        "POST /jobs/{id}/hold" => json!({"reason": "walk"}),
        // The source is walked; the snapshot is checked against it only once it is found.
        "POST /sources/{id}/restores" => json!({"snapshot": "01a00000-0000-7000-8000-000000000000",
            "dataTypes": ["customers"], "mode": "missing", "dryRun": true}),
        _ => return None,
    })
}

/// The kind a path parameter names: `{id}` after the collection, `{sourceId}`, `{jobId}`…; `None` for one
/// that is not an account's resource id (a file name, a platform).
fn path_kind(segments: &[&str], index: usize) -> Option<Kind> {
    let name = segments[index]
        .trim_start_matches('{')
        .trim_end_matches('}');
    let name = name.split(':').next().unwrap_or(name);
    match name {
        "sourceId" => Some(Kind::Source),
        "jobId" => Some(Kind::Job),
        "connectionId" => Some(Kind::Connection),
        "groupId" => Some(Kind::SourceGroup),
        "id" => match segments[index.checked_sub(1)?] {
            "connections" => Some(Kind::Connection),
            "sources" => Some(Kind::Source),
            "source-groups" => Some(Kind::SourceGroup),
            "jobs" => Some(Kind::Job),
            "webhooks" => Some(Kind::Webhook),
            other => panic!("`{{id}}` after `{other}`: say what kind of resource it names"),
        },
        _ => None,
    }
}

fn placeholder_kind(text: &str) -> Option<Kind> {
    match text {
        "{connection}" => Some(Kind::Connection),
        "{source}" => Some(Kind::Source),
        "{sourceGroup}" => Some(Kind::SourceGroup),
        "{job}" => Some(Kind::Job),
        _ => None,
    }
}

/// One route with its resource slots in order (path first, then body), filled in for one request.
struct Route {
    method: String,
    template: String,
    /// Per path segment: `Some(kind)` for an id slot, `None` with a fixed value otherwise.
    segments: Vec<(String, Option<Kind>)>,
    body: Option<Value>,
    /// Whether the route takes `?asOf=`.
    as_of: bool,
    slots: usize,
}

impl Route {
    /// The path and body with the slots filled from `ids` (in slot order).
    fn fill(&self, ids: &[String]) -> (String, Option<Value>) {
        let mut next = ids.iter();
        let path = self
            .segments
            .iter()
            .map(|(fixed, kind)| match kind {
                Some(_) => next.next().unwrap().clone(),
                None => fixed.clone(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let body = self.body.as_ref().map(|body| {
            let mut body = body.clone();
            if let Some(object) = body.as_object_mut() {
                for value in object.values_mut() {
                    if value.as_str().and_then(placeholder_kind).is_some() {
                        *value = Value::String(next.next().unwrap().clone());
                    }
                }
            }
            body
        });
        (format!("/{path}"), body)
    }

    /// The kinds of the slots, in order.
    fn kinds(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self.segments.iter().filter_map(|(_, k)| *k).collect();
        if let Some(object) = self.body.as_ref().and_then(Value::as_object) {
            kinds.extend(
                object
                    .values()
                    .filter_map(|v| v.as_str().and_then(placeholder_kind)),
            );
        }
        kinds
    }
}

/// Every operation of the OpenAPI document, as routes to walk; panics on one that is neither walkable nor
/// listed in [`NAMES_NO_RESOURCE`].
fn routes(openapi: &Value) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut unclassified = Vec::new();
    let mut not_walked = BTreeSet::new();
    for (template, item) in openapi["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let method = method.to_ascii_uppercase();
            let route = format!("{method} {template}");
            let raw: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            let segments: Vec<(String, Option<Kind>)> = raw
                .iter()
                .enumerate()
                .map(|(i, segment)| {
                    if segment.starts_with('{') {
                        let kind = path_kind(&raw, i);
                        // A parameter that names no resource: a value that exists for the account's own
                        // resource (the manifest every stored backup has).
                        (
                            if kind.is_none() {
                                "manifest.json".to_owned()
                            } else {
                                String::new()
                            },
                            kind,
                        )
                    } else {
                        ((*segment).to_owned(), None)
                    }
                })
                .collect();
            let body = body_for(&route);
            if NAMES_NO_RESOURCE.contains(&route.as_str()) && body.is_none() {
                not_walked.insert(route);
                continue;
            }
            if operation.get("requestBody").is_some() && body.is_none() {
                unclassified.push(format!("{route} (needs a body in body_for)"));
                continue;
            }
            let as_of = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "asOf" && p["in"] == "query"));
            let mut route_ = Route {
                method,
                template: template.clone(),
                segments,
                body,
                as_of,
                slots: 0,
            };
            route_.slots = route_.kinds().len();
            if route_.slots == 0 {
                not_walked.insert(route);
            } else {
                routes.push(route_);
            }
        }
    }
    let listed: BTreeSet<String> = NAMES_NO_RESOURCE.iter().map(|s| s.to_string()).collect();
    for route in not_walked.difference(&listed) {
        unclassified.push(format!(
            "{route} (names no resource: list it in NAMES_NO_RESOURCE, or give it a body)"
        ));
    }
    for route in listed.difference(&not_walked) {
        unclassified.push(format!(
            "{route} is listed in NAMES_NO_RESOURCE but is not a route without ids"
        ));
    }
    assert!(unclassified.is_empty(), "classify: {unclassified:#?}");
    routes
}

/// Status, the headers a client can see (all but `date`) and the body bytes.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

async fn ask(app: &TestApp, token: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http
        .request(method, app.url(path))
        .bearer_auth(token)
        // The same request id for both requests compared: it is echoed in the header and the body.
        .header("x-request-id", "contract-walk");
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        if name.as_str() != "date" {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or("<binary>").to_owned());
        }
    }
    let body = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// A connection, a source, a group with the source in it, and a job of the source (`succeeded`, so its files
/// exist when `finished`) for `account`.
async fn resources(backup: &BackupApp, token: &str, finished: bool) -> Owned {
    let app = &backup.app;
    let source = stripe_source(app, token, "walked", &["customers"], false).await;
    let view: Value = app
        .get(&format!("/sources/{source}"), token)
        .await
        .json()
        .await
        .unwrap();
    let connection = view["connectionId"].as_str().unwrap().to_owned();
    let group: Value = app
        .post("/source-groups", token, &json!({"name": "walked"}))
        .await
        .json()
        .await
        .unwrap();
    let group = group["groupId"].as_str().unwrap().to_owned();
    let added = app
        .post(
            &format!("/source-groups/{group}/sources"),
            token,
            &json!({"sourceId": source}),
        )
        .await;
    assert_eq!(added.status(), 200);
    let webhook: Value = app
        .post(
            "/webhooks",
            token,
            &json!({"url": "https://hooks.example.com/walk", "events": ["backup.corrupted"],
                    "description": "walked"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let webhook = webhook["webhookId"].as_str().unwrap().to_owned();
    let job = sync(app, token, &source).await;
    if finished {
        let job = backup.finished(token, &job).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    BTreeMap::from([
        (Kind::Connection, connection),
        (Kind::Source, source),
        (Kind::SourceGroup, group),
        (Kind::Job, job),
        (Kind::Webhook, webhook),
    ])
}

#[tokio::test]
async fn another_accounts_resource_is_the_same_404_as_a_missing_one_on_every_route() {
    let backup = BackupApp::spawn().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 3);
    let app = &backup.app;
    let acme = app.owner("acme");
    let globex = app.owner("globex");
    let theirs = resources(&backup, &acme, true).await;
    let ours = resources(&backup, &globex, false).await;

    let openapi: Value = app.openapi().await;
    let routes = routes(&openapi);
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let mut differences = Vec::new();
    let mut walked = 0;
    for route in &routes {
        let kinds = route.kinds();
        let missing: Vec<String> = kinds
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        // Every slot another account's, and every slot missing; then, with several slots, the first one
        // the caller's own (its group, with another account's source in it or not).
        let foreign: Vec<String> = kinds.iter().map(|k| theirs[k].clone()).collect();
        let mut cases = vec![(foreign.clone(), missing.clone(), "another account's ids")];
        if kinds.len() > 1 {
            let own_first = |rest: &[String]| {
                std::iter::once(ours[&kinds[0]].clone())
                    .chain(rest[1..].iter().cloned())
                    .collect::<Vec<_>>()
            };
            cases.push((own_first(&foreign), own_first(&missing), "its own first id"));
        }
        for (foreign, missing, case) in cases {
            let queries: &[&str] = if route.as_of { &["", "asOf"] } else { &[""] };
            for query in queries {
                let with_query = |path: String| match *query {
                    "asOf" => format!("{path}?asOf={as_of}"),
                    _ => path,
                };
                let (foreign_path, foreign_body) = route.fill(&foreign);
                let (missing_path, missing_body) = route.fill(&missing);
                let got_foreign = ask(
                    app,
                    &globex,
                    &route.method,
                    &with_query(foreign_path),
                    foreign_body.as_ref(),
                )
                .await;
                let got_missing = ask(
                    app,
                    &globex,
                    &route.method,
                    &with_query(missing_path),
                    missing_body.as_ref(),
                )
                .await;
                walked += 1;
                let label = format!("{} {} ({case}{query})", route.method, route.template);
                if got_foreign.status != 404 {
                    differences.push(format!("{label}: {got_foreign:?}, not a 404"));
                }
                if got_foreign != got_missing {
                    differences.push(format!(
                        "{label}: another account's\n  {got_foreign:?}\nmissing\n  {got_missing:?}"
                    ));
                } else if got_foreign.status == 404 {
                    let problem: Value = serde_json::from_str(&got_foreign.body).unwrap();
                    assert_eq!(problem["code"], "NOT_FOUND", "{label}");
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {walked} requests differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The walk reached the routes issue 11 named, and more.
    let templates: BTreeSet<String> = routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    for named in [
        "PUT /connections/{id}",
        "DELETE /connections/{id}",
        "PUT /sources/{id}",
        "DELETE /sources/{id}",
        "POST /sources/{id}/sync",
        "POST /jobs",
        "PUT /source-groups/{id}",
        "DELETE /source-groups/{id}",
        "DELETE /source-groups/{id}/sources/{sourceId}",
        "GET /jobs/{id}/files",
        "GET /jobs/{id}/files/{name}",
        "GET /jobs/{id}/events",
        "POST /jobs/{id}/cancel",
        "POST /jobs/{id}/retry",
        "POST /source-groups/{id}/sync",
        "POST /source-groups/{id}/sources",
        "POST /connections/{id}/test",
        "POST /connections/{id}/reconnect",
        "POST /sources/{id}/test",
        "GET /sources/{id}/history",
        "POST /jobs/{id}/hold",
        "DELETE /jobs/{id}/hold",
        "POST /jobs/{id}/verify",
        "PUT /webhooks/{id}",
        "DELETE /webhooks/{id}",
        "POST /webhooks/{id}/test",
        "POST /webhooks/{id}/rotate-secret",
        "GET /webhooks/{id}/deliveries",
        "POST /sources/{id}/restores",
        "GET /sources/{id}/snapshots",
        "GET /sources/{id}/snapshots/{jobId}/records",
        "GET /sources/{id}/snapshots/{jobId}/export",
        "GET /sources/{id}/records/{dataType}/{recordId}/versions",
    ] {
        assert!(templates.contains(named), "{named} was not walked");
    }

    // Nothing of the other account's changed on the way.
    let job: Value = backup.job(&acme, &theirs[&Kind::Job]).await;
    assert_eq!(job["status"], "succeeded");
    for (kind, path) in [
        (Kind::Connection, "connections"),
        (Kind::Source, "sources"),
        (Kind::SourceGroup, "source-groups"),
    ] {
        let response = app.get(&format!("/{path}/{}", theirs[&kind]), &acme).await;
        assert_eq!(response.status(), 200, "{path}");
        let view: Value = response.json().await.unwrap();
        assert_eq!(view["name"], "walked", "{path}");
    }
    let response = app
        .get(&format!("/webhooks/{}", theirs[&Kind::Webhook]), &acme)
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["description"], "walked");
    backup.stop().await;
}

/// Issue 11 §3: path ids are parsed into typed ids by the extractor, before the handler runs. Text that is not
/// a UUID names nothing: on every route, ids that are not UUIDs in every path slot get byte-for-byte the
/// answer missing ids get (the 404 problem naming the kind of the first slot), never a 400 or a 500.
#[tokio::test]
async fn a_path_id_that_is_not_a_uuid_is_the_same_404_as_a_missing_one_on_every_route() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    let token = app.owner("initech");
    let openapi: Value = app.openapi().await;
    let routes = routes(&openapi);
    let mut differences = Vec::new();
    let mut walked = 0;
    for route in &routes {
        let path_slots = route.segments.iter().filter(|(_, k)| k.is_some()).count();
        if path_slots == 0 {
            continue;
        }
        let missing: Vec<String> = route
            .kinds()
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        // Path slots malformed (a NUL-free word, a UUID cut short, one with a letter past `f`); body slots
        // as missing ones, so that only the path differs.
        for bad in [
            "not-a-uuid",
            "0190f5c2-7d3e-7a11-8b2c",
            "0190f5c2-7d3e-7a11-8b2c-0123456789ag",
        ] {
            let malformed: Vec<String> = missing
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    if i < path_slots {
                        bad.to_owned()
                    } else {
                        id.clone()
                    }
                })
                .collect();
            let (malformed_path, malformed_body) = route.fill(&malformed);
            let (missing_path, missing_body) = route.fill(&missing);
            let got_malformed = ask(
                app,
                &token,
                &route.method,
                &malformed_path,
                malformed_body.as_ref(),
            )
            .await;
            let got_missing = ask(
                app,
                &token,
                &route.method,
                &missing_path,
                missing_body.as_ref(),
            )
            .await;
            walked += 1;
            let label = format!("{} {} ({bad})", route.method, route.template);
            if got_malformed.status != 404 {
                differences.push(format!("{label}: {got_malformed:?}, not a 404"));
            } else if got_malformed != got_missing {
                differences.push(format!(
                    "{label}: malformed\n  {got_malformed:?}\nmissing\n  {got_missing:?}"
                ));
            }
        }
    }
    assert!(walked >= 3 * 30, "only {walked} requests walked");
    assert!(
        differences.is_empty(),
        "{} of {walked} requests differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    backup.stop().await;
}

/// A connection (no source uses it, so it may be deleted), a source and a group of `token`'s account: their
/// paths.
async fn one_of_each(app: &TestApp, token: &str) -> [String; 3] {
    let connection = app
        .create_stripe_connection(token, "versions", "sk_test_1")
        .await;
    let source = stripe_source(app, token, "versions", &["customers"], false).await;
    let group: Value = app
        .post("/source-groups", token, &json!({"name": "versions"}))
        .await
        .json()
        .await
        .unwrap();
    [
        format!(
            "/connections/{}",
            connection["connectionId"].as_str().unwrap()
        ),
        format!("/sources/{source}"),
        format!("/source-groups/{}", group["groupId"].as_str().unwrap()),
    ]
}

async fn put_if_match(
    app: &TestApp,
    token: &str,
    path: &str,
    version: i64,
    name: &str,
) -> reqwest::Response {
    app.http
        .put(app.url(path))
        .bearer_auth(token)
        .header("if-match", format!("\"{version}\""))
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stale_if_match_is_412_version_conflict_for_every_resource() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    for path in one_of_each(&app, &token).await {
        let current: Value = app.get(&path, &token).await.json().await.unwrap();
        let version = current["version"].as_i64().unwrap();
        let renamed = put_if_match(&app, &token, &path, version, "renamed").await;
        assert_eq!(renamed.status(), 200, "{path}");
        assert_eq!(
            renamed.headers()["etag"],
            format!("\"{}\"", version + 1).as_str()
        );

        // The version the client read is no longer current: 412, and nothing changes.
        let (status, problem) =
            problem_code(put_if_match(&app, &token, &path, version, "lost update").await).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (412, Some("VERSION_CONFLICT")),
            "{path}: {problem}"
        );
        let stale_delete = app
            .http
            .delete(app.url(&path))
            .bearer_auth(&token)
            .header("if-match", format!("\"{version}\""))
            .send()
            .await
            .unwrap();
        let (status, problem) = problem_code(stale_delete).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (412, Some("VERSION_CONFLICT")),
            "{path}: {problem}"
        );
        let now: Value = app.get(&path, &token).await.json().await.unwrap();
        assert_eq!(now["name"], "renamed", "{path}");
        assert_eq!(now["version"], version + 1, "{path}");
    }
    app.stop().await;
}

/// A sync is a command on its source: with a stale `If-Match` it is 412 and queues nothing; with the current
/// version it is queued.
#[tokio::test]
async fn a_sync_with_a_stale_if_match_is_412_and_queues_nothing() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    app.create_stripe_connection(&token, "sync versions", "sk_test_1")
        .await;
    let source = stripe_source(&app, &token, "sync versions", &["customers"], false).await;
    let path = format!("/sources/{source}");
    let version = app.get(&path, &token).await.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    let renamed = put_if_match(&app, &token, &path, version, "renamed").await;
    assert_eq!(renamed.status(), 200);
    let sync = |version: i64| {
        app.http
            .post(app.url(&format!("{path}/sync")))
            .bearer_auth(&token)
            .header("if-match", format!("\"{version}\""))
            .send()
    };
    let (status, problem) = problem_code(sync(version).await.unwrap()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (412, Some("VERSION_CONFLICT")),
        "{problem}"
    );
    let jobs: Value = app
        .get(&format!("/jobs?sourceId={source}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
    let queued = sync(version + 1).await.unwrap();
    assert_eq!(queued.status(), 202);
    app.stop().await;
}

#[tokio::test]
async fn racing_writes_land_without_if_match_and_all_but_one_are_412_with_it() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    for path in one_of_each(&app, &token).await {
        let start: Value = app.get(&path, &token).await.json().await.unwrap();
        let version = start["version"].as_i64().unwrap();

        // Without If-Match every writer lands: a lost race is decided again by the command layer.
        let bodies: Vec<Value> = (0..10)
            .map(|i| json!({"name": format!("writer {i}")}))
            .collect();
        let puts = bodies.iter().map(|body| app.put(&path, &token, body));
        let statuses: Vec<u16> = futures::future::join_all(puts)
            .await
            .into_iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert_eq!(statuses, vec![200; 10], "{path}");
        let after: Value = app.get(&path, &token).await.json().await.unwrap();
        assert_eq!(after["version"], version + 10, "{path}");

        // With the same If-Match, one wins and every other is a 412, never a 409.
        let version = version + 10;
        let names: Vec<String> = (0..10).map(|i| format!("if-match {i}")).collect();
        let puts = names
            .iter()
            .map(|name| put_if_match(&app, &token, &path, version, name));
        let mut statuses: Vec<u16> = futures::future::join_all(puts)
            .await
            .into_iter()
            .map(|r| r.status().as_u16())
            .collect();
        statuses.sort();
        let mut expected = vec![200];
        expected.extend([412; 9]);
        assert_eq!(statuses, expected, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_deletes_nothing_even_with_cascade() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source = stripe_source(&app, &token, "cascade", &["customers"], false).await;
    let view: Value = app
        .get(&format!("/sources/{source}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let connection = format!("/connections/{}", view["connectionId"].as_str().unwrap());
    let current: Value = app.get(&connection, &token).await.json().await.unwrap();
    let stale = current["version"].as_i64().unwrap() + 1;
    let delete = |query: &'static str, version: i64| {
        app.http
            .delete(app.url(&format!("{connection}{query}")))
            .bearer_auth(&token)
            .header("if-match", format!("\"{version}\""))
            .send()
    };

    // The precondition is judged first: 412, not the 409 of a connection in use, and no source is deleted.
    for query in ["", "?cascade=true"] {
        let (status, problem) = problem_code(delete(query, stale).await.unwrap()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (412, Some("VERSION_CONFLICT")),
            "{query}: {problem}"
        );
        assert_eq!(
            app.get(&format!("/sources/{source}"), &token)
                .await
                .status(),
            200
        );
    }
    // With the current version: the business rule (409), then the cascade.
    let version = current["version"].as_i64().unwrap();
    let (status, problem) = problem_code(delete("", version).await.unwrap()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("CONFLICT")),
        "{problem}"
    );
    assert_eq!(
        delete("?cascade=true", version).await.unwrap().status(),
        204
    );
    assert_eq!(
        app.get(&format!("/sources/{source}"), &token)
            .await
            .status(),
        404
    );
    app.stop().await;
}

/// Issue 11 §3: an id has one text form, the hyphenated UUID. The other forms the `uuid` crate reads (braced,
/// `urn:uuid:`, the 32 digits alone) name nothing: on every kind of resource, in the path of a read, a
/// change and a deletion, in a history's path and in a body, they get byte-for-byte the answer a missing
/// id gets, and change nothing. Upper case stays the same id (RFC 9562 §4: UUIDs are read in either case).
#[tokio::test]
async fn an_id_in_another_text_form_is_the_same_404_as_a_missing_one() {
    use listbackup_api::auth::Role;
    let app = TestApp::spawn().await;
    let token = app.token("initech", &[Role::Owner, Role::Auditor]);
    let connection = app
        .create_stripe_connection(&token, "forms", "sk_test_1")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = |path: &'static str, body: Value, field: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let response = app.post(path, token, &body).await;
            assert_eq!(response.status(), 201, "{path}");
            let view: Value = response.json().await.unwrap();
            view[field].as_str().unwrap().to_owned()
        }
    };
    let source = created(
        "/sources",
        json!({"connectionId": connection, "name": "forms", "dataTypes": ["customers"]}),
        "sourceId",
    )
    .await;
    let group = created("/source-groups", json!({"name": "forms"}), "groupId").await;
    let webhook = created(
        "/webhooks",
        json!({"url": "https://hooks.example.com/forms", "events": ["backup.corrupted"], "description": "forms"}),
        "webhookId",
    )
    .await;
    let others = |id: &str| {
        [
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            id.replace('-', ""),
            format!("{{{}}}", id.to_uppercase()),
        ]
    };
    let missing = uuid::Uuid::now_v7().to_string();
    let mut differences = Vec::new();
    let mut walked = 0;
    for (collection, id) in [
        ("connections", &connection),
        ("sources", &source),
        ("source-groups", &group),
        ("webhooks", &webhook),
    ] {
        let view = |id: String| {
            let (app, token) = (&app, &token);
            async move {
                let response = app.get(&format!("/{collection}/{id}"), token).await;
                assert_eq!(response.status(), 200, "{collection}/{id}");
                response.json::<Value>().await.unwrap()
            }
        };
        let before = view(id.clone()).await;
        // Upper case is the same id.
        assert_eq!(
            view(id.to_uppercase()).await,
            before,
            "{collection} in upper case"
        );
        let body = if collection == "webhooks" {
            json!({"description": "renamed"})
        } else {
            json!({"name": "renamed"})
        };
        for other in others(id) {
            for (method, suffix, body) in [
                ("GET", "", None),
                ("GET", "/history", None),
                ("PUT", "", Some(&body)),
                ("DELETE", "", None),
            ] {
                if suffix == "/history" && collection == "webhooks" {
                    continue;
                }
                let path = |id: &str| format!("/{collection}/{id}{suffix}");
                let got_other = ask(&app, &token, method, &path(&other), body).await;
                let got_missing = ask(&app, &token, method, &path(&missing), body).await;
                walked += 1;
                let label = format!("{method} {}", path(&other));
                if got_other.status != 404 {
                    differences.push(format!("{label}: {got_other:?}, not a 404"));
                } else if got_other != got_missing {
                    differences.push(format!(
                        "{label}:\n  {got_other:?}\nmissing\n  {got_missing:?}"
                    ));
                }
            }
        }
        // Nothing was changed or deleted through another form.
        assert_eq!(view(id.clone()).await, before, "{collection}");
    }
    // In a body: adding the source to the group by another form of its id is the missing source's answer.
    for other in others(&source) {
        let path = format!("/source-groups/{group}/sources");
        let got_other = ask(
            &app,
            &token,
            "POST",
            &path,
            Some(&json!({"sourceId": other})),
        )
        .await;
        let got_missing = ask(
            &app,
            &token,
            "POST",
            &path,
            Some(&json!({"sourceId": missing})),
        )
        .await;
        walked += 1;
        if got_other.status != 404 || got_other != got_missing {
            differences.push(format!(
                "POST {path} {other}:\n  {got_other:?}\nmissing\n  {got_missing:?}"
            ));
        }
    }
    let members: Value = app
        .get(&format!("/source-groups/{group}/sources"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["sources"], json!([]), "{members}");
    assert!(
        differences.is_empty(),
        "{} of {walked} requests differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    app.stop().await;
}

/// The methods the OpenAPI document gives `template`, as `Allow` lists them: HEAD beside GET.
fn allow_of(item: &Value) -> Vec<&'static str> {
    let mut allow = Vec::new();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        if item.get(method.to_ascii_lowercase()).is_some() {
            allow.push(method);
            if method == "GET" {
                allow.push("HEAD");
            }
        }
    }
    allow
}

/// RFC 9110 §15.5.6: every path the service has (each of the OpenAPI document, the document itself and its
/// UI) answers a method it does not take with 405, `Allow` naming the ones it does (HEAD wherever GET is),
/// and a problem of its own code, never a 404 or a VALIDATION_ERROR.
#[tokio::test]
async fn every_path_answers_a_method_it_does_not_take_with_405_method_not_allowed() {
    let app = TestApp::spawn().await;
    let token = app.owner("initech");
    let openapi: Value = app.openapi().await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut paths: Vec<(String, Vec<&'static str>)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(template, item)| {
            let path = template
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        id.as_str()
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (path, allow_of(item))
        })
        .collect();
    for service_path in ["/openapi.json", "/docs", "/docs/", "/docs/index.html"] {
        paths.push((service_path.to_owned(), vec!["GET", "HEAD"]));
    }
    let mut wrong = Vec::new();
    let mut walked = 0;
    for (path, allow) in &paths {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            if allow.contains(&method) {
                continue;
            }
            let response = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(path),
                )
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            walked += 1;
            let status = response.status().as_u16();
            let got_allow = response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            let expected = allow.join(", ");
            if status != 405 || got_allow.as_deref() != Some(expected.as_str()) {
                wrong.push(format!(
                    "{method} {path}: {status}, Allow {got_allow:?}, not 405 with {expected:?}"
                ));
                continue;
            }
            if method == "HEAD" {
                continue;
            }
            let (_, problem) = problem_code(response).await;
            if problem["code"] != "METHOD_NOT_ALLOWED"
                || problem["title"] != "Method not allowed"
                || problem["status"] != 405
            {
                wrong.push(format!("{method} {path}: {problem}"));
            }
        }
    }
    assert!(walked > 150, "only {walked} requests walked");
    assert!(
        wrong.is_empty(),
        "{} of {walked}:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // A path the service does not have stays a 404, whatever the method.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .http
            .request(method.clone(), app.url("/platforms/"))
            .send()
            .await
            .unwrap();
        let (status, problem) = problem_code(response).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{method}"
        );
    }
    app.stop().await;
}

/// A request's status and headers (all but `date`), and its body's length.
async fn head_of(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, BTreeMap<String, Vec<String>>, usize) {
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("x-request-id", "head-and-get");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        if name != "date" {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap().to_owned());
        }
    }
    let body = response.bytes().await.unwrap();
    (status, headers, body.len())
}

/// RFC 9110 §9.3.2: HEAD wherever GET is, answered as the GET would be (status and headers, `Content-Length`
/// included) without the body: a list, a health check, a resource, the document, and the GET's refusals
/// (401 without a token, the 404 of a missing resource). A path that takes no GET refuses HEAD with 405
/// (the walk above).
#[tokio::test]
async fn head_is_answered_as_get_would_be_without_a_body() {
    let app = TestApp::spawn().await;
    let token = app.owner("initech");
    let connection = app
        .create_stripe_connection(&token, "head", "sk_test_1")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = uuid::Uuid::now_v7();
    for (path, token, status) in [
        ("/health/live".to_owned(), None, 200),
        ("/platforms".to_owned(), Some(token.as_str()), 200),
        ("/openapi.json".to_owned(), None, 200),
        ("/connections".to_owned(), Some(token.as_str()), 200),
        (
            format!("/connections/{connection}"),
            Some(token.as_str()),
            200,
        ),
        ("/connections".to_owned(), None, 401),
        (format!("/connections/{missing}"), Some(token.as_str()), 404),
    ] {
        let (get_status, get_headers, get_length) =
            head_of(&app, reqwest::Method::GET, &path, token).await;
        let (head_status, head_headers, head_length) =
            head_of(&app, reqwest::Method::HEAD, &path, token).await;
        assert_eq!(get_status, status, "GET {path}");
        assert!(get_length > 0, "GET {path} has a body");
        assert_eq!(head_status, get_status, "HEAD {path}");
        assert_eq!(head_headers, get_headers, "HEAD {path}");
        assert_eq!(
            head_headers.get("content-length"),
            Some(&vec![get_length.to_string()]),
            "HEAD {path}"
        );
        assert_eq!(head_length, 0, "HEAD {path} has no body");
    }
    app.stop().await;
}
