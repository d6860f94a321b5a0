//! Gives every request an id (the caller's `X-Request-Id` when it is sane, else a fresh UUID v7), echoes it
//! on every response, writes it into problem+json bodies, and logs one line per request.

use std::time::Instant;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The id of the request being served; handlers take it from the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn accept_incoming(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| accept_incoming(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    // The path only: query strings may carry OAuth codes and states, which do not belong in logs.
    let path = req.path().to_owned();

    // Every log line written while the request is served (handlers, use cases, the store) carries its id.
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let res = next.call(req).instrument(span).await?.map_into_boxed_body();
    let status = res.status();
    let is_problem = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let mut res = if is_problem {
        with_request_id_in_problem(res, &id).await?
    } else {
        res
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(request_id = %id, %method, %path, status = status.as_u16(), latency_ms, "request");
    } else {
        tracing::info!(request_id = %id, %method, %path, status = status.as_u16(), latency_ms, "request");
    }
    Ok(res)
}

async fn with_request_id_in_problem(
    res: ServiceResponse<BoxBody>,
    id: &str,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = to_bytes(body).await.unwrap_or_default();
    let patched = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut problem) => {
            problem["requestId"] = serde_json::Value::String(id.to_owned());
            serde_json::to_vec(&problem).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    let res = head.set_body(BoxBody::new(patched));
    Ok(ServiceResponse::new(req, res))
}
