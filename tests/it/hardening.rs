//! Issue 14 §2–§3: HTTP limits (413, 431, 408), security headers, CORS for configured origins only, request
//! rate limits (429 with `Retry-After`) and the start-up checks of the configuration. What reqwest cannot
//! send (a declared body never sent, a chunked body, a body one byte at a time) goes over a raw TCP socket.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{problem_code, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The raw socket of a test app.
async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// A response read off a raw socket: status, lower-cased headers, body, and whether the server closed the
/// connection after it (EOF within the deadline).
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    closed: bool,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{:?}",
            self.headers
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Reads one response (head and `Content-Length` body), then waits up to `close_within` for the server to
/// close the connection. A reset after the response counts as closed.
async fn read_response(
    stream: &mut TcpStream,
    within: Duration,
    close_within: Duration,
) -> RawResponse {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break (end, length);
            }
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("read failed before a whole response: {e} (got {buf:?})"),
            Err(_) => panic!(
                "no whole response in time; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        };
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + length]).into_owned();
    let closed = loop {
        match timeout(close_within, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    RawResponse {
        status,
        headers,
        body,
        closed,
    }
}

const CAP: usize = 64 * 1024;

#[tokio::test]
async fn a_body_over_the_cap_is_a_413_whatever_its_type_and_however_it_is_sent() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-limits");

    // Declared (Content-Length: 10 MB) and never sent: refused from the head alone, and the socket closed.
    for content_type in ["application/json", "text/plain", "application/octet-stream"] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: 10485760\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'x'; 1024]).await.unwrap();
        let response =
            read_response(&mut stream, Duration::from_secs(10), Duration::from_secs(5)).await;
        assert_eq!(response.status, 413, "{content_type}: {}", response.body);
        assert_eq!(response.problem()["code"], "PAYLOAD_TOO_LARGE");
        assert!(response.closed, "{content_type}: the connection is closed");
    }

    // Chunked: cut off where it passes the cap, whatever its type.
    for content_type in ["application/json", "text/plain"] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![b' '; 8192];
        // 80 KiB in 8 KiB chunks, with no final chunk: the server must answer without the end of the body.
        for _ in 0..10 {
            stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await
                .unwrap();
            stream.write_all(&piece).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
        }
        let response =
            read_response(&mut stream, Duration::from_secs(10), Duration::from_secs(5)).await;
        assert_eq!(response.status, 413, "{content_type}: {}", response.body);
        assert_eq!(response.problem()["code"], "PAYLOAD_TOO_LARGE");
        assert!(response.closed, "{content_type}: the connection is closed");
    }

    // Just over the cap through an ordinary client, and just under it (then it is judged as JSON).
    let over = app
        .http
        .post(app.url("/connections"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(vec![b'x'; CAP + 1])
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_code(over).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
    assert!(problem["requestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let under = app
        .http
        .post(app.url("/connections"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; CAP])
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(under).await.0, 400);
}

#[tokio::test]
async fn oversized_request_headers_are_a_431() {
    let app = TestApp::spawn().await;
    let big = "a".repeat(100 * 1024);
    let response = app
        .http
        .get(app.url("/connections"))
        .bearer_auth(app.owner("acct-headers"))
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_code(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (431, Some("HEADERS_TOO_LARGE"))
    );

    // A long URL is a 414 of its own (RFC 9110 §15.5.15), before the head's cap; one just under 8 KiB is
    // read (and its unknown parameter refused); an ordinary request is untouched.
    for length in [9 * 1024, 40 * 1024] {
        let long_url = app.url(&format!("/connections?x={}", "b".repeat(length)));
        let response = app.http.get(long_url).send().await.unwrap();
        let (status, problem) = problem_code(response).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (414, Some("URI_TOO_LONG"))
        );
    }
    let long_url = app.url(&format!("/connections?x={}", "b".repeat(8 * 1024 - 20)));
    let response = app
        .http
        .get(long_url)
        .bearer_auth(app.owner("acct-headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(response).await.0, 400);
    let response = app.get("/connections", &app.owner("acct-headers")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn past_actix_http_s_own_buffer_the_server_answers_431_itself() {
    // 128 KiB is where actix-http stops reading a request head; it answers a bare 431 and closes.
    let app = TestApp::spawn().await;
    let mut stream = connect(&app).await;
    let head = format!(
        "GET /connections HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(140 * 1024)
    );
    // The server may stop reading (and reset) before the whole head is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            other => panic!(
                "no response: {other:?} after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn a_body_sent_slowly_is_cut_off_with_a_408_and_its_socket_closed() {
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_HTTP_BODY_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let token = app.owner("acct-slow");
    for chunked in [false, true] {
        let mut stream = connect(&app).await;
        let framing = if chunked {
            "Transfer-Encoding: chunked"
        } else {
            "Content-Length: 200"
        };
        let head = format!(
            "POST /connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        // One byte a second, until the server stops taking them (at most 30).
        let trickle = tokio::spawn(async move {
            for _ in 0..30 {
                let byte: &[u8] = if chunked { b"1\r\n \r\n" } else { b" " };
                if writer.write_all(byte).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(15);
        let closed = loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => break false,
            }
        };
        trickle.abort();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "chunked={chunked}: {text}"
        );
        assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
        assert!(closed, "chunked={chunked}: the server closes the socket");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cut off near the 2 s deadline, not after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_chunked_body_to_a_route_that_reads_none_does_not_hold_the_socket() {
    // POST /connections/{id}/test takes no body: a body of undeclared size is refused at once (400), and the
    // trickle is not drained.
    let app = TestApp::spawn().await;
    let token = app.owner("acct-trickle");
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /connections/{}/test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n",
        uuid::Uuid::now_v7()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            if writer.write_all(b"1\r\n \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    trickle.abort();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("takes no body"), "{text}");
    assert!(
        closed,
        "the socket is closed, not held while the trickle is drained"
    );
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_a_408_from_actix_http_and_closed() {
    // actix-http's own client_request_timeout (5 s): a head that never ends does not hold its socket.
    let app = TestApp::spawn().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /connections HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let response =
        read_response(&mut stream, Duration::from_secs(15), Duration::from_secs(5)).await;
    assert_eq!(response.status, 408);
    assert!(response.closed, "the server closes the socket");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The security headers every response carries.
fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let h = response.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"),
        "{what}"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let token = app.owner("acct-headers");
    let cases = [
        ("/health/live", None, 200),
        ("/connections", Some(token.as_str()), 200),
        ("/connections", None, 401),
        ("/connections/not-a-uuid", Some(token.as_str()), 404),
        ("/no/such/route", Some(token.as_str()), 404),
        ("/openapi.json", None, 200),
    ];
    for (path, token, status) in cases {
        let mut request = app.http.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_security_headers(&response, path);
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "no HSTS over a plain http public URL"
        );
    }
    // The Swagger UI keeps its own caching and may run its scripts.
    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert_security_headers(&docs, "/docs/");
    assert_ne!(
        docs.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    assert_eq!(
        docs.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );

    let https = TestApp::spawn_with(|values| {
        values.insert(
            "LISTBACKUP_PUBLIC_URL".into(),
            "https://api.example.com".into(),
        );
    })
    .await;
    let response = https.http.get(https.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let app = TestApp::spawn_with(|values| {
        values.insert(
            "LISTBACKUP_CORS_ORIGINS".into(),
            "https://app.example.com".into(),
        );
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/connections"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_security_headers(&allowed, "preflight");

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let (status, problem) = problem_code(refused).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("FORBIDDEN")));

    // Simple requests: served either way, but only the configured origin is told it may read the answer.
    let token = app.owner("acct-cors");
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example.com", false),
    ] {
        let response = app
            .http
            .get(app.url("/connections"))
            .bearer_auth(&token)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_some(),
            allowed,
            "{origin}"
        );
    }

    // None configured (the default): every preflight is refused.
    let closed = TestApp::spawn().await;
    let refused = closed
        .http
        .request(reqwest::Method::OPTIONS, closed.url("/connections"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(problem_code(refused).await.0, 403);
}

/// Asserts a 429 problem with a whole-seconds `Retry-After` of at least 1.
async fn assert_rate_limited(response: reqwest::Response, what: &str) {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    let (status, problem) = problem_code(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{what}: {problem}"
    );
}

#[tokio::test]
async fn an_account_over_its_rate_is_429_and_another_account_is_not() {
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_RATE_LIMIT_ACCOUNT".into(), "5/min".into());
        values.insert("LISTBACKUP_RATE_LIMIT_IP".into(), "off".into());
    })
    .await;
    let busy = app.owner("acct-busy");
    for n in 1..=5 {
        assert_eq!(
            app.get("/connections", &busy).await.status(),
            200,
            "request {n}"
        );
    }
    assert_rate_limited(app.get("/connections", &busy).await, "6th request").await;
    // Another token of the same account shares its budget; another account has its own.
    let colleague = app.token("acct-busy", &[listbackup_api::auth::Role::Viewer]);
    assert_rate_limited(app.get("/sources", &colleague).await, "same account").await;
    let other = app.owner("acct-quiet");
    assert_eq!(app.get("/connections", &other).await.status(), 200);
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_429_and_a_good_token_still_answered() {
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_RATE_LIMIT_AUTH_FAILURES".into(), "5/min".into());
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..20 {
        let response = app.get("/connections", &format!("not-a-token-{n}")).await;
        statuses.push(response.status().as_u16());
        if n == 19 {
            assert_rate_limited(response, "20th bad token").await;
        }
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // A good token from the same address is still answered: only failing requests are refused.
    let good = app.owner("acct-flooded");
    assert_eq!(app.get("/connections", &good).await.status(), 200);
    let response = app.get("/connections", "not-a-token-again").await;
    assert_rate_limited(response, "a bad token after the good one").await;
}

#[tokio::test]
async fn the_whole_address_is_limited_except_health_checks() {
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_RATE_LIMIT_IP".into(), "8/min".into());
    })
    .await;
    let token = app.owner("acct-ip");
    for n in 1..=8 {
        assert_eq!(
            app.get("/platforms", &token).await.status(),
            200,
            "request {n}"
        );
    }
    assert_rate_limited(app.get("/platforms", &token).await, "9th request").await;
    assert_rate_limited(
        app.http
            .get(app.url("/no/such/route"))
            .send()
            .await
            .unwrap(),
        "any route",
    )
    .await;
    // X-Forwarded-For is not believed from a peer that is not a configured proxy.
    let spoofed = app
        .http
        .get(app.url("/platforms"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .unwrap();
    assert_rate_limited(spoofed, "a made-up X-Forwarded-For").await;
    let health = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_RATE_LIMIT_IP".into(), "3/min".into());
        values.insert("LISTBACKUP_TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let token = app.owner("acct-proxied");
    let from = |client: &'static str| {
        app.http
            .get(app.url("/platforms"))
            .bearer_auth(&token)
            // What a client wrote (left) is not believed; the proxy's own entry (right) is.
            .header("x-forwarded-for", format!("6.6.6.6, {client}"))
            .send()
    };
    for n in 1..=3 {
        assert_eq!(
            from("198.51.100.1").await.unwrap().status(),
            200,
            "request {n}"
        );
    }
    assert_rate_limited(from("198.51.100.1").await.unwrap(), "4th from one client").await;
    assert_eq!(from("198.51.100.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn calls_that_reach_a_platform_have_a_stricter_limit_per_account() {
    let app = TestApp::spawn_with(|values| {
        values.insert(
            "LISTBACKUP_RATE_LIMIT_PLATFORM_CALLS".into(),
            "2/min".into(),
        );
    })
    .await;
    let token = app.owner("acct-tests");
    let missing = uuid::Uuid::now_v7();
    // Connection and source tests share the budget (it is charged before the resource is looked up).
    let first = app
        .post(&format!("/connections/{missing}/test"), &token, &json!({}))
        .await;
    assert_eq!(first.status(), 404);
    let second = app
        .post(&format!("/sources/{missing}/test"), &token, &json!({}))
        .await;
    assert_eq!(second.status(), 404);
    let third = app
        .post(&format!("/connections/{missing}/test"), &token, &json!({}))
        .await;
    assert_rate_limited(third, "third platform call").await;
    // Reads are not platform calls; another account has its own budget.
    assert_eq!(app.get("/connections", &token).await.status(), 200);
    let other = app.owner("acct-other");
    let response = app
        .post(&format!("/sources/{missing}/test"), &other, &json!({}))
        .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_rate_limits_are_on_by_default() {
    // The defaults (what TestApp switches off for other tests): 60 failed authentications a minute per address.
    let app = TestApp::spawn_with(|values| {
        for key in support::RATE_LIMIT_KEYS {
            values.remove(key);
        }
    })
    .await;
    for n in 0..60 {
        let response = app.get("/connections", &format!("bad-{n}")).await;
        assert_eq!(response.status(), 401, "failure {n}");
    }
    assert_rate_limited(app.get("/connections", "bad-61").await, "61st failure").await;
}

#[tokio::test]
async fn serve_refuses_a_short_jwt_secret_and_names_the_variable() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
        .arg("serve")
        .env("DATABASE_URL", "postgres://root@127.0.0.1:1/none")
        .env("LISTBACKUP_MASTER_KEY", support::random_master_key())
        .env("LISTBACKUP_JWT_SECRET", "a")
        .env("LISTBACKUP_BIND", "127.0.0.1:0")
        .env_remove("LISTBACKUP_CONFIG")
        .output();
    let output = timeout(Duration::from_secs(30), output)
        .await
        .expect("serve exits at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LISTBACKUP_JWT_SECRET") && stderr.contains("at least 32"),
        "{stderr}"
    );
}

/// The lists actix-cors sends are kept in hash sets, one per HTTP worker with its own random order: the same
/// request got `ETag, Location, …` on one connection and `X-Request-Id, ETag, …` on the next, so two answers
/// meant to be the same (another account's resource and a missing one) were not byte for byte. On fresh
/// connections (which the server spreads over its workers), each list is in one declared order.
#[tokio::test]
async fn cors_lists_are_in_one_order_on_every_connection() {
    let app = TestApp::spawn_with(|values| {
        values.insert(
            "LISTBACKUP_CORS_ORIGINS".into(),
            "https://app.example.com".into(),
        );
    })
    .await;
    let token = app.owner("acct-cors-order");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        // A client without idle connections: every request on a new connection.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let missing = http
            .get(app.url(&format!("/connections/{}", uuid::Uuid::now_v7())))
            .bearer_auth(&token)
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let preflight = http
            .request(reqwest::Method::OPTIONS, app.url("/connections"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "HEAD")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 200);
        let value = |response: &reqwest::Response, name: &str| {
            response.headers()[name].to_str().unwrap().to_owned()
        };
        seen.insert((
            value(&missing, "access-control-expose-headers"),
            value(&preflight, "access-control-allow-methods"),
            value(&preflight, "access-control-allow-headers"),
        ));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [(
            "etag, location, retry-after, x-request-id".to_owned(),
            "GET, HEAD, POST, PUT, PATCH, DELETE".to_owned(),
            "authorization, content-type, if-match, idempotency-key, x-request-id".to_owned(),
        )]
    );
    app.stop().await;
}

/// A token signed with the service's own secret, holding `claims` (`exp` an hour away unless given).
fn signed(app: &TestApp, claims: Value) -> String {
    let mut claims = claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let object = claims.as_object_mut().unwrap();
    object.entry("exp").or_insert(json!(now + 3600));
    object.entry("sub").or_insert(json!("test-user"));
    object.entry("roles").or_insert(json!(["owner"]));
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(
            app.config.auth.hs256_secret.as_deref().unwrap().as_bytes(),
        ),
    )
    .unwrap()
}

/// A signed id is taken exactly as signed: `" acme"` is not another tenant beside `acme` (nor is it made
/// `acme`), it is refused, like a NUL or an invisible character. A signed `exp` or `iat` that is not a number
/// of seconds is malformed, not missing. All 401s.
#[tokio::test]
async fn signed_claims_out_of_their_one_form_are_refused() {
    let app = TestApp::spawn().await;
    let acme = signed(&app, json!({"account_id": "acme"}));
    app.create_stripe_connection(&acme, "acme's", "sk_test_1")
        .await;
    let listed = app.get("/connections", &acme).await;
    assert_eq!(listed.status(), 200);
    for (claims, reason) in [
        (json!({"account_id": " acme"}), "whitespace"),
        (json!({"account_id": "acme "}), "whitespace"),
        (json!({"account_id": "acme\u{a0}"}), "whitespace"),
        (json!({"account_id": "ac\u{0}me"}), "control"),
        (json!({"account_id": "ac\u{200B}me"}), "invisible"),
        (
            json!({"account_id": "acme", "iat": "soon"}),
            "`iat` claim is malformed",
        ),
        (
            json!({"account_id": "acme", "sub": " test-user"}),
            "whitespace",
        ),
        (
            json!({"account_id": "acme", "exp": "soon"}),
            "`exp` claim is malformed",
        ),
        (
            json!({"account_id": "acme", "exp": 1e20}),
            "`exp` claim is malformed",
        ),
        (
            json!({"account_id": "acme", "exp": -5}),
            "`exp` claim is malformed",
        ),
    ] {
        let token = signed(&app, claims.clone());
        let (status, problem) = problem_code(app.get("/connections", &token).await).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{claims}: {problem}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{claims}: {detail}");
        assert!(!detail.contains("has no `"), "{claims}: {detail}");
    }
    // Still missing when it is missing.
    let mut claims = json!({"account_id": "acme", "sub": "test-user", "roles": ["owner"]});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(
            app.config.auth.hs256_secret.as_deref().unwrap().as_bytes(),
        ),
    )
    .unwrap();
    let (status, problem) = problem_code(app.get("/connections", &token).await).await;
    assert_eq!(status, 401);
    assert_eq!(problem["detail"], "the token has no `exp` claim");
    claims["exp"] = Value::Null;
    let (status, _) = problem_code(app.get("/connections", &signed(&app, claims)).await).await;
    assert_eq!(status, 401);
    app.stop().await;
}
