//! What every request goes through before a route sees it (issue 14): the caps on the request's head and
//! body, the body read deadline, security headers on every response, and CORS for the configured origins
//! only.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use futures::Stream;

use crate::error::{ApiError, ErrorCode};
use crate::extract::MAX_BODY_BYTES;
use crate::rate_limit::RateLimitSettings;

/// Default cap on a request's line and headers together (`LISTBACKUP_HTTP_MAX_HEADER_BYTES`): room for a
/// 16 KiB token and ordinary headers besides.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// The largest header cap that can be configured: actix-http itself answers a bare 431 and closes the
/// connection once a request head reaches 128 KiB, before the application sees it.
pub const MAX_HEADER_BYTES_LIMIT: usize = 96 * 1024;
/// The longest request target (path and query, as sent) served, in bytes: RFC 9110 §4.1 asks a server to
/// take at least 8,000 octets. Over it → 414 `URI_TOO_LONG` (RFC 9110 §15.5.15), before the head's cap.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Default time a request's whole body may take to arrive (`LISTBACKUP_HTTP_BODY_TIMEOUT_SECS`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTP settings of the API, from the configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Cap on the request line and headers together, in bytes; over it → 431.
    pub max_header_bytes: usize,
    /// How long a request's whole body may take to arrive, from the moment its head was read; over it →
    /// 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Origins (`https://app.example.com`) that browsers may call the API from; none by default.
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (when the public URL is https).
    pub hsts: bool,
    /// Request rates per account, per client address, of failed authentication and of platform calls.
    pub rate_limits: RateLimitSettings,
    /// How long a stopping server lets in-flight requests finish before closing their connections
    /// (`LISTBACKUP_SHUTDOWN_GRACE_SECS`, the same grace the backups get).
    pub shutdown_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            cors_origins: Vec::new(),
            hsts: false,
            rate_limits: RateLimitSettings::default(),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// Parses `LISTBACKUP_CORS_ORIGINS`: comma-separated origins, each `http(s)://host[:port]` with nothing
/// after it. Returns them in their serialized form (what browsers send in `Origin`).
pub fn parse_cors_origins(raw: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = url::Url::parse(item).map_err(|e| format!("{item:?} is not an origin: {e}"))?;
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
            return Err(format!(
                "{item:?} is not an origin: give scheme, host and optional port only (https://app.example.com)"
            ));
        }
        origins.push(url.origin().ascii_serialization());
    }
    Ok(origins)
}

/// The methods a preflight may ask for: every method the API answers (HEAD wherever GET is).
const CORS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// The request headers a preflight may ask for.
const CORS_REQUEST_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "if-match",
    "idempotency-key",
    crate::request_id::HEADER,
];
/// The response headers a page may read.
const CORS_EXPOSED_HEADERS: [&str; 4] =
    ["etag", "location", "retry-after", crate::request_id::HEADER];

/// CORS for the configured origins only (none by default). Requests from other origins are served as
/// usual but without CORS headers, so browsers refuse them; their preflights are a 403 problem.
pub fn cors(settings: &HttpSettings) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(CORS_METHODS)
        .allowed_headers(CORS_REQUEST_HEADERS)
        .expose_headers(CORS_EXPOSED_HEADERS)
        .max_age(600)
        .block_on_origin_mismatch(false);
    for origin in &settings.cors_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// What actix-cors answers, made the API's: a refused preflight is the API's problem (403) instead of a
/// plain-text 400, and the lists it sends (`Access-Control-Allow-Methods`, `-Allow-Headers`,
/// `-Expose-Headers`) are in the order declared above. actix-cors keeps them in hash sets, each HTTP worker
/// its own with its own random order, so the same request would otherwise get differently ordered headers
/// from one connection to the next (and an answer could not be compared byte for byte with another).
pub async fn cors_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut res = next.call(req).await?.map_into_boxed_body();
    let refused = res
        .response()
        .error()
        .and_then(|e| e.as_error::<actix_cors::CorsError>())
        .map(ToString::to_string);
    if let Some(reason) = refused {
        let (req, _) = res.into_parts();
        let problem = ApiError::forbidden(format!("CORS: {reason}"));
        return Ok(ServiceResponse::new(
            req,
            actix_web::ResponseError::error_response(&problem),
        ));
    }
    let headers = res.headers_mut();
    for (name, values) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &CORS_METHODS[..]),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &CORS_REQUEST_HEADERS[..],
        ),
        (
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &CORS_EXPOSED_HEADERS[..],
        ),
    ] {
        if headers.contains_key(&name) {
            let value =
                HeaderValue::from_str(&values.join(", ")).expect("header names are header-safe");
            headers.insert(name, value);
        }
    }
    Ok(res)
}

/// Security headers on every response, problems and 404s included. The Swagger UI (`/docs/…`) keeps its
/// caching and may run its scripts; everything else is `no-store` and may load nothing.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let hsts = req
        .app_data::<web::Data<HttpSettings>>()
        .is_some_and(|s| s.hsts);
    let is_docs = req.path() == "/docs" || req.path().starts_with("/docs/");
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    let set = |headers: &mut header::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if is_docs {
        set(
            headers,
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'",
        );
    } else {
        set(
            headers,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        );
        if !headers.contains_key(header::CACHE_CONTROL) {
            set(headers, header::CACHE_CONTROL, "no-store");
        }
    }
    if hsts {
        set(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        );
    }
    Ok(res)
}

/// The caps on the request's head and body, and the body read deadline. A declared body over the cap is
/// refused before a byte of it is read; an undeclared (chunked) one is cut off where it passes the cap; a
/// body still arriving at the deadline is cut off there. Each answers its problem and closes the connection.
pub async fn request_limits(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let settings = req
        .app_data::<web::Data<HttpSettings>>()
        .map(|s| (s.max_header_bytes, s.body_timeout))
        .unwrap_or((DEFAULT_MAX_HEADER_BYTES, DEFAULT_BODY_TIMEOUT));
    let (max_header_bytes, body_timeout) = settings;
    let target_bytes = req
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_bytes > MAX_URI_BYTES {
        let problem = ApiError::new(
            ErrorCode::UriTooLong,
            format!(
                "the request's path and query are longer than {} KiB",
                MAX_URI_BYTES / 1024
            ),
        );
        return Ok(req.error_response(problem).map_into_boxed_body());
    }
    // As on the wire: request line, and `name: value\r\n` per header.
    let head_bytes = req.method().as_str().len()
        + req.uri().to_string().len()
        + 12
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_bytes > max_header_bytes {
        let problem = ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request line and headers are larger than {} KiB",
                max_header_bytes / 1024
            ),
        );
        return Ok(req.error_response(problem).map_into_boxed_body());
    }
    if declared_length(req.headers()).is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Ok(req.error_response(body_too_large()).map_into_boxed_body());
    }
    let payload = req.take_payload();
    let cut_off = Rc::new(RefCell::new(None));
    let limited = LimitedPayload {
        inner: Some(payload),
        cut_off: cut_off.clone(),
        read: 0,
        deadline: Box::pin(tokio::time::sleep(body_timeout)),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(limited),
    });
    let mut res = next.call(req).await?.map_into_boxed_body();
    let unread = cut_off.borrow_mut().take();
    if let Some(unread) = unread {
        res.response_mut()
            .extensions_mut()
            .insert(UnreadBody(Some(unread)));
    }
    Ok(res)
}

/// The rest of a body that was cut off (over the cap, or past its deadline) or never read, kept from being
/// dropped until its response is sent. actix-http drains a dropped chunked body before it closes the connection
/// (however slowly it trickles in); a body still held when the response ends makes it close instead.
struct UnreadBody(Option<Payload>);

/// Outermost: moves a cut-off body ([`UnreadBody`], from [`request_limits`]) into its response's body, so
/// that it lives until the response has been written and the connection is closed rather than drained.
/// (Outermost because the request-id middleware rebuilds problem bodies; response extensions survive that.)
pub async fn close_after_cut_off_body(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut res = next.call(req).await?.map_into_boxed_body();
    let unread = res
        .response_mut()
        .extensions_mut()
        .get_mut::<UnreadBody>()
        .and_then(|u| u.0.take());
    match unread {
        Some(unread) => Ok(res.map_body(|_, body| {
            BoxBody::new(HoldingBody {
                body,
                _unread: unread,
            })
        })),
        None => Ok(res),
    }
}

/// A response body that keeps the request's unread body alive until it has been sent.
struct HoldingBody {
    body: BoxBody,
    _unread: Payload,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The body's length as its `Content-Length` declares it, when it does (and is a number).
pub fn declared_length(headers: &actix_web::http::header::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The 413 of a body over the cap.
pub fn body_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {} KiB", MAX_BODY_BYTES / 1024),
    )
}

/// The 408 of a body that did not arrive in time.
pub fn body_timed_out() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "the body did not arrive within the body read timeout",
    )
}

/// What a body read error means for the client: over the cap (413), too slow (408), or broken (400).
pub fn body_read_error(err: &PayloadError) -> ApiError {
    match err {
        PayloadError::Overflow => body_too_large(),
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => body_timed_out(),
        _ => ApiError::bad_request("the body could not be read"),
    }
}

/// A request body that fails with [`PayloadError::Overflow`] past the cap and with a `TimedOut` I/O error
/// at the deadline.
/// Once it fails, the rest of the body is handed to `cut_off` (see [`UnreadBody`]).
struct LimitedPayload {
    inner: Option<Payload>,
    cut_off: Rc<RefCell<Option<Payload>>>,
    read: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Drop for LimitedPayload {
    /// A body the route never read to its end (a route that takes no body, or one cut off) is kept for its
    /// response too, so that a chunked one is not drained for as long as its sender trickles.
    fn drop(&mut self) {
        if let Some(unread) = self.inner.take() {
            *self.cut_off.borrow_mut() = Some(unread);
        }
    }
}

impl LimitedPayload {
    fn cut_off(&mut self, err: PayloadError) -> Poll<Option<Result<web::Bytes, PayloadError>>> {
        *self.cut_off.borrow_mut() = self.inner.take();
        Poll::Ready(Some(Err(err)))
    }
}

impl Stream for LimitedPayload {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.read += chunk.len();
                if self.read > MAX_BODY_BYTES {
                    return self.cut_off(PayloadError::Overflow);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    return self.cut_off(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "body read timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_origins() {
        assert_eq!(
            parse_cors_origins("https://app.example.com, http://localhost:3000").unwrap(),
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        assert_eq!(parse_cors_origins("").unwrap(), Vec::<String>::new());
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
        ] {
            assert!(parse_cors_origins(bad).is_err(), "{bad}");
        }
    }
}
