//! Reading requests: query parameters, headers, credentials; and the timestamp format most APIs share.

use actix_web::HttpRequest;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};

/// A request's query string as `(name, value)` pairs, in order, repeated names kept.
pub(crate) type Query = Vec<(String, String)>;

/// The first value of query parameter `name`.
pub(crate) fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A header's value, if present and visible ASCII.
pub(crate) fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name)?.to_str().ok()
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer(req: &HttpRequest) -> Option<&str> {
    let (scheme, token) = header(req, "Authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// RFC 3339 with milliseconds and `Z`, as HubSpot writes times: `2024-01-01T00:00:00.000Z`.
pub(crate) fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `(user, password)` of `Authorization: Basic …` (RFC 7617); the password may be empty, the user may not
/// hold a colon.
pub(crate) fn basic(req: &HttpRequest) -> Option<(String, String)> {
    let (scheme, encoded) = header(req, "Authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_owned(), password.to_owned()))
}
