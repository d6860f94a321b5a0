//! The API layer's one error type and its one mapping to `application/problem+json` (RFC 9457).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use listbackup_domain::ErrorChain;
use listbackup_domain::ResourceKind;
use serde::Serialize;

/// The machine-readable code of a problem, as listed in DESIGN §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    /// 404: missing, deleted, or another account's (indistinguishable).
    NotFound,
    /// 409: the request contradicts the resource's state (a connection with live sources, a source with a
    /// job queued or running).
    Conflict,
    /// 412: `If-Match` names a version that is not (or, once another request committed first, no longer)
    /// the resource's current one, on every resource.
    VersionConflict,
    /// 410: the resource existed and is gone for good (a backup's files once retention expired it).
    Gone,
    /// 405, with `Allow`: the path exists but does not answer this method (RFC 9110 §15.5.6).
    MethodNotAllowed,
    /// 429, with `Retry-After`: a rate limit of the account, the client's address, failed authentication or
    /// calls that reach a platform (issue 14).
    RateLimited,
    /// 408: the request's body did not arrive within the body read timeout; the connection is closed.
    RequestTimeout,
    /// 413: the request's body is larger than the cap (64 KiB); the connection is closed.
    PayloadTooLarge,
    /// 431: the request's line and headers together are larger than the cap; the connection is closed.
    HeadersTooLarge,
    /// 414: the request's path and query are longer than the service reads (8 KiB).
    UriTooLong,
    /// 415: a body sent without `Content-Type: application/json` (RFC 9110 §15.5.16), with another type, or
    /// with a content coding (`Content-Encoding: gzip`).
    UnsupportedMediaType,
    PlatformError,
    Unavailable,
    Internal,
}

impl ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::VersionConflict => StatusCode::PRECONDITION_FAILED,
            Self::Gone => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::PlatformError => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::ValidationError => "The request is not valid",
            Self::Unauthorized => "Authentication is required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict with the current state",
            Self::VersionConflict => "The resource changed meanwhile",
            Self::Gone => "Gone",
            Self::MethodNotAllowed => "Method not allowed",
            Self::RateLimited => "Too many requests",
            Self::RequestTimeout => "The request took too long to arrive",
            Self::PayloadTooLarge => "The request body is too large",
            Self::HeadersTooLarge => "The request headers are too large",
            Self::UnsupportedMediaType => "The body's media type is not supported",
            Self::UriTooLong => "The request's path and query are too long",
            Self::PlatformError => "The platform answered with an error",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every error a route can answer with.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds, for RATE_LIMITED and UNAVAILABLE.
    pub retry_after: Option<u64>,
    /// Overrides the code's usual status (e.g. 422 for an Idempotency-Key reused with another body).
    pub status: Option<StatusCode>,
    /// The methods the path answers (`Allow`), for METHOD_NOT_ALLOWED.
    pub allow: Option<String>,
    /// The content codings a body may have (`Accept-Encoding`, RFC 9110 §15.5.16), for a 415 refusing one.
    pub accept_encoding: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            status: None,
            allow: None,
            accept_encoding: None,
        }
    }

    /// 405 METHOD_NOT_ALLOWED with `Allow` (RFC 9110 §15.5.6): `path` exists, but not with `method`.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        let allowed = allowed.join(", ");
        Self {
            allow: Some(allowed.clone()),
            ..Self::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}; allowed: {allowed}"),
            )
        }
    }

    pub fn with_status_422(self) -> Self {
        Self {
            status: Some(StatusCode::UNPROCESSABLE_ENTITY),
            ..self
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        Self {
            errors,
            ..Self::new(ErrorCode::ValidationError, detail)
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, detail)
    }

    /// 415 UNSUPPORTED_MEDIA_TYPE: a body that is not declared `application/json`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON, sent with Content-Type: application/json",
        )
    }

    /// 415 UNSUPPORTED_MEDIA_TYPE with `Accept-Encoding: identity`: a body sent with a content coding
    /// (`Content-Encoding: gzip`…); the API reads bodies as sent, never decoded.
    pub fn unsupported_content_coding(coding: &str) -> Self {
        Self {
            accept_encoding: Some("identity"),
            ..Self::new(
                ErrorCode::UnsupportedMediaType,
                format!("a body with Content-Encoding {coding} is not accepted: send it unencoded"),
            )
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    /// The one 404 of a resource kind, the same whichever layer found nothing and whether the resource is
    /// missing, deleted or another account's (the write side's not-found carries the same detail).
    pub fn not_found(kind: ResourceKind) -> Self {
        Self::new(ErrorCode::NotFound, kind.not_found())
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, detail)
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "an internal error occurred; it has been logged",
        )
    }

    /// 503, with `Retry-After`: the database or another dependency cannot serve the request right now.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(UNAVAILABLE_RETRY_AFTER_SECS),
            ..Self::new(ErrorCode::Unavailable, detail)
        }
    }

    /// 429 RATE_LIMITED, with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limited(detail: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(ErrorCode::RateLimited, detail)
        }
    }

    /// Logs an unexpected failure with its chain of sources (without exposing it) and answers INTERNAL.
    pub fn from_unexpected<E>(err: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let err = err.into();
        tracing::error!(
            error = %ErrorChain(&*err),
            "unexpected failure"
        );
        Self::internal()
    }
}

/// How long a client is asked to wait after a 503 (`Retry-After`, RFC 9110 §10.2.3): long enough for a busy
/// pool to free a connection or a restarted database to accept them again.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// Filled in by the request-id middleware.
    pub request_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let code_slug = serde_json::to_value(self.code)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.to_ascii_lowercase().replace('_', "-")))
            .unwrap_or_default();
        let problem = Problem {
            problem_type: format!("https://listbackup.ai/problems/{code_slug}"),
            title: self.code.title().to_string(),
            status: status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            request_id: String::new(),
            errors: self.errors.clone(),
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(codings) = self.accept_encoding {
            response.insert_header((header::ACCEPT_ENCODING, codings));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        // The request's body (or head) was not read to its end: the connection cannot carry another request,
        // and a slow or oversized sender must not keep its socket.
        if matches!(
            self.code,
            ErrorCode::RequestTimeout | ErrorCode::PayloadTooLarge | ErrorCode::HeadersTooLarge
        ) {
            response.force_close();
        }
        response.json(problem)
    }
}
