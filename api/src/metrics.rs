//! HTTP metrics (issue 14 §1): every request's latency by route template, method and status, in the
//! histogram [`HTTP_REQUEST_DURATION`] (its `_count` series counts the requests). The route is the template
//! the request matched (`/sources/{sourceId}`), never the raw path, whose ids would make a series per
//! resource; a request that matched no route is `unmatched`. Recorded through the `metrics` facade (nothing
//! until the process installs a recorder).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;

/// Histogram, seconds: from a request's arrival at the application to its response head, by `method`,
/// `route` (template) and `status` (OpenTelemetry's `http.server.request.duration`, in Prometheus naming).
/// A streamed response (an event stream, a download) counts until its head, not its last byte.
pub const HTTP_REQUEST_DURATION: &str = "http_server_request_duration_seconds";

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Records the request in [`HTTP_REQUEST_DURATION`]. Outermost, so that the answers of the other
/// middlewares (429 rate limited, 408 body timeout, 413 too large) are counted too.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next.call(req).await;
    let (status, route) = match &res {
        // The router stored the matched template in the request it shares with the response.
        Ok(res) => (res.status().as_u16(), res.request().match_pattern()),
        Err(err) => (err.as_response_error().status_code().as_u16(), None),
    };
    metrics::histogram!(
        HTTP_REQUEST_DURATION,
        "method" => method,
        "route" => route.unwrap_or_else(|| UNMATCHED.to_owned()),
        "status" => status.to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    res
}

/// The standard methods by name; any other (an extension method a client made up) is `other`, so that
/// clients cannot mint series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
