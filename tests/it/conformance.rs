//! The corners of the REST contract a demanding client hits (README "API conventions"): the media type of
//! bodies (415), bodies that are not objects, `If-Match` as RFC 9110 §13.1.1 reads it (`*`, lists, weak
//! tags compared strongly), repeated query parameters, and how paths and ids are matched.

use crate::support;

use serde_json::{json, Value};
use support::{problem_code, TestApp};

/// Every problem carries the RFC 9457 members and the API's code, and says `status` as the response does.
fn assert_problem(status: u16, problem: &Value, code: &str) {
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status, "{problem}");
    for member in ["type", "title", "detail", "requestId"] {
        assert!(
            problem[member].as_str().is_some_and(|v| !v.is_empty()),
            "{member} in {problem}"
        );
    }
}

#[tokio::test]
async fn a_body_not_declared_json_is_a_415_and_a_missing_body_a_400() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-media");
    let body = r#"{"name":"g"}"#;
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut request = app
            .http
            .post(app.url("/source-groups"))
            .bearer_auth(&token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };

    // A JSON body with another type, or with none: the route cannot read it.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/merge-patch+json"),
        None,
    ] {
        let (status, problem) = problem_code(send(content_type, body).await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}: {problem}");
        assert_problem(415, &problem, "UNSUPPORTED_MEDIA_TYPE");
    }
    // No body and no type: the body is missing.
    let (status, problem) = problem_code(send(None, "").await.unwrap()).await;
    assert_eq!(status, 400, "{problem}");
    assert_problem(400, &problem, "VALIDATION_ERROR");
    // The type's parameters and case do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let response = send(Some(content_type), body).await.unwrap();
        assert_eq!(response.status(), 201, "{content_type}");
    }
    // A body with a content coding is not decoded: a 415 saying which coding is taken (RFC 9110 §15.5.16).
    let response = app
        .http
        .post(app.url("/source-groups"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["accept-encoding"], "identity");
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 415, "{problem}");
    assert_problem(415, &problem, "UNSUPPORTED_MEDIA_TYPE");
    // A field given twice is named, like a repeated query parameter.
    let (status, problem) = problem_code(
        send(Some("application/json"), r#"{"name":"a","name":"b"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
    // Malformed JSON is a 400 that says where.
    let (status, problem) = problem_code(
        send(Some("application/json"), r#"{"name": "g",}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_problem(400, &problem, "VALIDATION_ERROR");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("line 1 column 14"),
        "{problem}"
    );

    // The OpenAPI document lists the 415 where a body is taken.
    let openapi = app.openapi().await;
    let post = &openapi["paths"]["/source-groups"]["post"]["responses"];
    assert_eq!(
        post["415"]["$ref"],
        "#/components/responses/UnsupportedMediaType"
    );
    assert!(openapi["paths"]["/source-groups"]["get"]["responses"]["415"].is_null());
}

#[tokio::test]
async fn a_body_is_an_object_never_an_array_of_its_fields() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-shape");
    // serde's structs would take `["name", null]` for `{name, description}`: refused, naming the body.
    for body in [json!(["from an array", null]), json!(null), json!("g")] {
        let (status, problem) = problem_code(app.post("/source-groups", &token, &body).await).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_problem(400, &problem, "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], "body", "{problem}");
    }
    let groups: Value = app
        .get("/source-groups", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(groups["sourceGroups"], json!([]), "nothing was created");

    // The same inside: a source's schedule is an object.
    let connection = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let (status, problem) = problem_code(
        app.post(
            "/sources",
            &token,
            &json!({"connectionId": connection["connectionId"], "name": "s", "schedule": ["daily"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "schedule", "{problem}");
}

#[tokio::test]
async fn if_match_takes_a_star_and_lists_and_compares_strongly() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-if-match");
    let id = app.create_group(&token, "g").await;
    let put = |if_match: &'static str, name: &'static str| {
        app.http
            .put(app.url(&format!("/source-groups/{id}")))
            .bearer_auth(&token)
            .header("if-match", if_match)
            .json(&json!({"name": name}))
            .send()
    };

    // A weak tag never matches under If-Match's strong comparison (RFC 9110 §13.1.1), even of the current
    // version; nor does a tag this API never issues.
    for if_match in [r#"W/"1""#, r#""abc""#, r#""01""#] {
        let (status, problem) = problem_code(put(if_match, "x").await.unwrap()).await;
        assert_eq!(status, 412, "{if_match}: {problem}");
        assert_problem(412, &problem, "VERSION_CONFLICT");
    }
    // A list matches when any of its tags is current.
    let response = put(r#""7", W/"1", "1""#, "second").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let (status, problem) = problem_code(put(r#""1", "3""#, "x").await.unwrap()).await;
    assert_eq!(status, 412, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("versions 1, 3"),
        "{problem}"
    );
    // `*`: any current version of an existing resource.
    let response = put("*", "third").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    // Several If-Match lines are one list.
    let response = app
        .http
        .put(app.url(&format!("/source-groups/{id}")))
        .bearer_auth(&token)
        .header("if-match", r#""9""#)
        .header("if-match", r#""3""#)
        .json(&json!({"name": "fourth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Not an entity-tag list: a 400 naming the header.
    for if_match in ["abc", r#""3"#, r#""3" "4""#, r#""3", *"#] {
        let (status, problem) = problem_code(put(if_match, "x").await.unwrap()).await;
        assert_eq!(status, 400, "{if_match}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "If-Match", "{problem}");
    }
    // A missing resource is its 404 whatever the precondition (`*` included).
    for if_match in ["*", r#"W/"1""#] {
        let response = app
            .http
            .delete(app.url(&format!("/source-groups/{}", uuid::Uuid::now_v7())))
            .bearer_auth(&token)
            .header("if-match", if_match)
            .send()
            .await
            .unwrap();
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 404, "{if_match}: {problem}");
    }
    // The resource was changed by the four successful writes only.
    let view: Value = app
        .get(&format!("/source-groups/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (view["version"].as_i64(), view["name"].as_str()),
        (Some(4), Some("fourth"))
    );
}

#[tokio::test]
async fn a_repeated_query_parameter_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-query");
    for (query, field) in [
        ("limit=1&limit=2", "limit"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
        ("status=bogus", "status"),
    ] {
        let (status, problem) =
            problem_code(app.get(&format!("/connections?{query}"), &token).await).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_problem(400, &problem, "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}

#[tokio::test]
async fn ids_match_in_either_case_and_percent_encoded_and_paths_are_not_rewritten() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-paths");
    let id = app.create_group(&token, "g").await;

    // An id in upper case, or with its characters percent-encoded, names the same resource (RFC 9562 §4;
    // RFC 3986 §2.1), answered with the id as the API writes it.
    let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
    for spelled in [id.to_uppercase(), encoded] {
        let response = app.get(&format!("/source-groups/{spelled}"), &token).await;
        assert_eq!(response.status(), 200, "{spelled}");
        let view: Value = response.json().await.unwrap();
        assert_eq!(view["groupId"], id.as_str());
    }

    // A trailing slash or a doubled one is another path, which the API does not have: a 404 problem.
    for path in [
        "/source-groups/".to_owned(),
        "//source-groups".to_owned(),
        format!("/source-groups//{id}"),
        format!("/source-groups/{id}/"),
    ] {
        let (status, problem) = problem_code(app.get(&path, &token).await).await;
        assert_eq!(status, 404, "{path}: {problem}");
        assert_problem(404, &problem, "NOT_FOUND");
    }
    // A long segment is just an id that names nothing.
    let (status, problem) = problem_code(
        app.get(&format!("/source-groups/{}", "a".repeat(4096)), &token)
            .await,
    )
    .await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (404, Some("source group not found"))
    );

    // An Accept without JSON still gets JSON (RFC 9110 §12.5.1 lets a server disregard it): the API has one
    // representation of each resource, and its problems.
    let response = app
        .http
        .get(app.url(&format!("/source-groups/{id}")))
        .bearer_auth(&token)
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
}

/// A route that takes no body (a sync, a test, a cancel) refuses one as every route refuses unknown fields
/// (DESIGN: never silently ignored): nothing, or a JSON object without members, is taken; a member is a 400
/// naming it, another JSON value a 400, a body of another declared type (or none) a 415.
#[tokio::test]
async fn a_route_that_takes_no_body_refuses_one_instead_of_ignoring_it() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-no-body");
    let id = app.create_group(&token, "empty").await;
    let path = format!("/source-groups/{id}/sync");
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut request = app.http.post(app.url(&path)).bearer_auth(&token).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    for (content_type, body) in [
        (None, ""),
        (Some("application/json"), ""),
        (Some("application/json"), "{}"),
        (Some("application/json; charset=utf-8"), " { } "),
    ] {
        let response = send(content_type, body).await.unwrap();
        assert_eq!(response.status(), 202, "{content_type:?} {body:?}");
    }
    let (status, problem) = problem_code(
        send(Some("application/json"), r#"{"dataTypes":["charges"]}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_problem(400, &problem, "VALIDATION_ERROR");
    assert!(
        problem.to_string().contains("dataTypes"),
        "names the member: {problem}"
    );
    let (status, problem) = problem_code(send(Some("application/json"), "[]").await.unwrap()).await;
    assert_eq!(status, 400, "{problem}");
    assert_problem(400, &problem, "VALIDATION_ERROR");
    for (content_type, body) in [(Some("text/plain"), "hello"), (None, "{}")] {
        let (status, problem) = problem_code(send(content_type, body).await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}: {problem}");
        assert_problem(415, &problem, "UNSUPPORTED_MEDIA_TYPE");
    }
    // The same on every such route: a connection test before it looks the connection up.
    let missing = uuid::Uuid::new_v4();
    let response = app
        .http
        .post(app.url(&format!("/connections/{missing}/test")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"verbose":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
