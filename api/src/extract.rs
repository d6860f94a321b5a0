//! Request parsing that never lets bad input through silently: unknown fields and parameters are errors,
//! every error names its field, and bodies are capped at 64 KiB.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use listbackup_commands::ExpectedVersion;
use listbackup_domain::{ResourceId, ResourceKind};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, FieldError};
use listbackup_projections::pagination::{decode_cursor, PageRequest, DEFAULT_LIMIT, MAX_LIMIT};

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body deserialized strictly into `T` (which should `deny_unknown_fields`).
pub struct JsonBody<T>(pub T);

/// SHA-256 of the raw body, left in the request extensions for the idempotency check.
#[derive(Debug, Clone)]
pub struct BodyDigest(pub String);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let body = read_body(&req, &mut payload).await?;
            if !declares_json(&req) {
                // No body at all is a missing body (400); a body of another or no declared type is one this
                // route cannot read (415, RFC 9110 §15.5.16).
                let declared_type = req.headers().contains_key(header::CONTENT_TYPE);
                if body.is_empty() && !declared_type {
                    return Err(ApiError::bad_request(
                        "a JSON body is required, sent with Content-Type: application/json",
                    ));
                }
                return Err(ApiError::unsupported_media_type());
            }
            req.extensions_mut()
                .insert(BodyDigest(hex::encode(Sha256::digest(&body))));
            parse_json::<Object<T>>(&body).map(|Object(value)| JsonBody(value))
        })
    }
}

/// The body of a route that takes none (a sync, a test, a cancel): nothing, or a JSON object without
/// members (`{}`, which some clients send with every POST). Anything else is refused as any other body's
/// unknown fields are, never ignored: a member is a 400 naming it, another JSON value a 400, a body of
/// another declared type (or none) a 415. A body whose size is not declared (`Transfer-Encoding: chunked`)
/// is refused at once, unread (400): such a route never waits on a body that may trickle in for minutes.
pub struct NoBody;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoMembers {}

impl FromRequest for NoBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let declared = req.headers().contains_key(header::CONTENT_LENGTH);
            if !declared && req.headers().contains_key(header::TRANSFER_ENCODING) {
                return Err(ApiError::bad_request(
                    "this route takes no body (nothing, or {} with a Content-Length)",
                ));
            }
            let body = read_body(&req, &mut payload).await?;
            if body.is_empty() {
                return Ok(NoBody);
            }
            if !declares_json(&req) {
                return Err(ApiError::unsupported_media_type());
            }
            parse_json::<Object<NoMembers>>(&body).map(|_| NoBody)
        })
    }
}

/// Reads a request's body, at most [`MAX_BODY_BYTES`] (413 past it, declared or not), refusing a content
/// coding (415 with `Accept-Encoding: identity`: bodies are read as sent).
async fn read_body(req: &HttpRequest, payload: &mut Payload) -> Result<Vec<u8>, ApiError> {
    // A declared body over the cap is a 413 whatever its type (the request-limits middleware has usually
    // refused it already).
    if crate::hardening::declared_length(req.headers())
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(crate::hardening::body_too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| crate::hardening::body_read_error(&e))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(crate::hardening::body_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // The type is judged once the body is in, so that a body over the cap is a 413 whatever its type
    // (chunked ones included: their size is known only by reading them, at most the cap).
    if let Some(coding) = content_coding(req) {
        return Err(ApiError::unsupported_content_coding(&coding));
    }
    Ok(body)
}

/// Whether the request's `Content-Type` is `application/json` (any parameters, such as `charset=utf-8`).
pub fn declares_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

/// The request's `Content-Encoding`, unless it is absent or `identity`: bodies are read as sent.
pub fn content_coding(req: &HttpRequest) -> Option<String> {
    let codings: Vec<String> = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect();
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// Deserializes JSON, turning serde's message into a field error with a dotted path. A string holding a NUL
/// (`\u0000`) is refused wherever it is, naming its field: PostgreSQL can store it neither in text nor in
/// jsonb (which the event store uses), so it could only fail later, as a 500.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Only a body spelling the escape can hold a NUL (a raw NUL byte is not valid JSON).
    if body.windows(6).any(|w| w == br"\u0000") {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(field) = nul_path(&value, "") {
                return Err(ApiError::field(field, NUL_MESSAGE));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    // Trailing bytes after the JSON value make the whole body invalid, not just ignored.
    if parsed.is_ok() {
        de.end()
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    }
    parsed.map_err(|err| {
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("the body is not valid JSON: {inner}"));
        }
        let path = err.path().to_string();
        field_error(&path, &inner.to_string())
    })
}

/// A value that must be a JSON object: serde's derived structs also take an array of their fields in order
/// (`["name", null]` for `{name, description}`), which no client means and the OpenAPI document does not
/// allow. Every request body is read through it ([`JsonBody`]), and nested objects through [`object`]. Any
/// other JSON value is the error "invalid type: …, expected a JSON object".
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectOnly(std::marker::PhantomData))
            .map(Object)
    }
}

/// `#[serde(default, deserialize_with = "crate::extract::object")]` for an optional field that holds a
/// struct: `null` or absent is `None`, an object is the struct, anything else (an array) is refused
/// ([`Object`]).
pub fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let value: Option<Object<T>> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.map(|Object(value)| value))
}

const NUL_MESSAGE: &str = "must not contain a NUL character";

/// The dotted path of the first string (or object key) holding a NUL, if any (`body` for the whole body).
fn nul_path(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    let join = |child: &str| {
        if path.is_empty() {
            child.to_owned()
        } else {
            format!("{path}.{child}")
        }
    };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(here),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{}[{i}]", here()))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(here())
            } else {
                nul_path(item, &join(key))
            }
        }),
        _ => None,
    }
}

/// serde reports an unknown field at its parent's path; name the field itself instead.
fn field_error(path: &str, message: &str) -> ApiError {
    let message = strip_position(message);
    let join = |parent: &str, child: &str| {
        if parent.is_empty() || parent == "." {
            child.to_owned()
        } else {
            format!("{parent}.{child}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // serde_path_to_error's path already ends at the unknown field itself.
        let name = rest.split('`').next().unwrap_or_default();
        let field = if path.is_empty() || path == "." {
            name.to_owned()
        } else {
            path.to_owned()
        };
        return ApiError::field(field, "is not a known field");
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return ApiError::field(join(path, name), "is given more than once");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return ApiError::field(join(path, name), "is required");
    }
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    ApiError::field(field, message)
}

/// serde_json appends " at line L column C"; for field errors the path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters deserialized strictly into `T`: an unknown parameter is a 400.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned> FromRequest for QueryParams<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // PostgreSQL text cannot hold a NUL: a parameter holding one could only fail later, as a 500.
        if let Some((name, _)) = form_urlencoded_parse(req.query_string())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            let name = if name.contains('\0') {
                "query".to_owned()
            } else {
                name.into_owned()
            };
            return std::future::ready(Err(ApiError::field(name, NUL_MESSAGE)));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(req.query_string()));
        let parsed = serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|err| {
                let message = err.inner().to_string();
                if let Some(rest) = message.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    return ApiError::field(name, "is not a known query parameter");
                }
                if let Some(rest) = message.strip_prefix("duplicate field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    return ApiError::field(name, "is given more than once");
                }
                let path = err.path().to_string();
                let field = if path == "." { "query".into() } else { path };
                ApiError::field(field, message)
            });
        std::future::ready(parsed)
    }
}

fn form_urlencoded_parse(query: &str) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(query.as_bytes())
}

/// For routes that take no query parameters at all.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The `If-Match` header (RFC 9110 §13.1.1) as the versions it admits ([`ExpectedVersion`]).
///
/// - absent, or `*`: no precondition (`*` is met by any existing resource; a missing one is still its 404);
/// - a comma-separated list of entity-tags (several `If-Match` lines are one list), compared strongly: `"3"`
///   names version 3 (written as the `ETag` gives it, without leading zeros); a weak tag (`W/"3"`) or an
///   opaque tag that is not a version names none, so a list of only those is a 412 `VERSION_CONFLICT` on an
///   existing resource;
/// - a bare `3` (the `version` field unquoted) is taken as `"3"`.
///
/// Anything else (an empty value, an unterminated quote, text outside quotes, `*` inside a list) is a 400
/// naming `If-Match`.
pub fn if_match(req: &HttpRequest) -> Result<ExpectedVersion, ApiError> {
    let mut lines = req.headers().get_all(header::IF_MATCH).peekable();
    if lines.peek().is_none() {
        return Ok(ExpectedVersion::Any);
    }
    let mut texts = Vec::new();
    for line in lines {
        texts.push(line.to_str().map_err(|_| if_match_error())?);
    }
    parse_if_match(&texts.join(",")).ok_or_else(if_match_error)
}

fn if_match_error() -> ApiError {
    ApiError::field(
        "If-Match",
        "must be `*` or a list of ETags of the resource (e.g. \"3\")",
    )
}

/// [`if_match`]'s grammar: `*`, a bare version, or `#entity-tag` (RFC 9110 §8.8.3, §5.6.1); `None` when the
/// text is none of them.
fn parse_if_match(text: &str) -> Option<ExpectedVersion> {
    const OWS: [char; 2] = [' ', '\t'];
    let text = text.trim_matches(OWS);
    if text == "*" {
        return Some(ExpectedVersion::Any);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(|v| ExpectedVersion::OneOf(vec![v]));
    }
    let mut versions = Vec::new();
    let mut rest = text;
    loop {
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let tag = tag.strip_prefix('"')?;
        let end = tag.find('"')?;
        let opaque = &tag[..end];
        // etagc: %x21 / %x23-7E (the header was visible ASCII already).
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        if !weak {
            if let Ok(version) = opaque.parse::<u64>() {
                if version.to_string() == opaque && !versions.contains(&version) {
                    versions.push(version);
                }
            }
        }
        rest = tag[end + 1..].trim_start_matches(OWS);
        if rest.is_empty() {
            return Some(ExpectedVersion::OneOf(versions));
        }
        rest = rest.strip_prefix(',')?.trim_start_matches(OWS);
    }
}

/// The ETag of a resource at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// 200 with a resource's JSON and its ETag.
pub fn with_etag(view: &impl serde::Serialize, version: i64) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .insert_header((header::ETAG, etag(version)))
        .json(view)
}

/// Parses an id a client sent (a path segment other than `{id}`, a body field) as the typed id `I`: anything
/// but a UUID in its hyphenated form ([`listbackup_domain::parse_hyphenated`]: not `{…}`, `urn:uuid:…` or
/// the 32 digits alone) cannot name a resource, so it is simply `kind`'s not-found, the same 404 as a
/// missing one.
/// `kind` is usually `I::KIND`; a snapshot is named by its backup job's id, and its 404 says "snapshot".
pub fn resource_id<I: ResourceId>(raw: &str, kind: ResourceKind) -> Result<I, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(kind))
}

/// The `{id}` segment of a route's path, parsed by the extractor into the typed id of the resource it names
/// (`PathId<SourceId>` on `/sources/{id}`); [`PathId::get`] gives it to the handler. Anything but a hyphenated
/// UUID names nothing: `get` is then the 404 problem of `I::KIND` (`"source not found"`), byte-for-byte the answer for a
/// missing or another account's resource.
///
/// The extraction itself never fails: the handler asks for the id where it parsed it before, after its
/// authorization check, so the order of the answers is unchanged (401, the query's and body's 400, 403, then
/// this 404), and a request whose id is refused has had its body read like any other (actix polls a
/// handler's extractors together, and one failing at once would leave the body unread and the connection
/// closed).
#[derive(Debug)]
pub struct PathId<I>(Result<I, ApiError>);

impl<I> PathId<I> {
    /// The typed id, or its kind's 404 problem when the segment is not a UUID.
    pub fn get(self) -> Result<I, ApiError> {
        self.0
    }
}

impl<I: ResourceId + 'static> FromRequest for PathId<I> {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = match req.match_info().get("id") {
            Some(raw) => resource_id(raw, I::KIND),
            None => Err(ApiError::from_unexpected(
                "a PathId route without an {id} segment",
            )),
        };
        std::future::ready(Ok(PathId(id)))
    }
}

/// Parses `?limit` and `?cursor`, adding field errors.
pub fn page_request(
    limit: Option<i64>,
    cursor: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> PageRequest {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let before_id = cursor.and_then(|c| {
        let decoded = decode_cursor(c);
        if decoded.is_none() {
            errors.push(FieldError::new("cursor", "is not a cursor this API issued"));
        }
        decoded
    });
    PageRequest { limit, before_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn field_of(body: &str) -> String {
        parse_json::<Body>(body.as_bytes()).unwrap_err().errors[0]
            .field
            .clone()
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        assert_eq!(field_of(r#"{"name":"a","bogus":1}"#), "bogus");
        assert_eq!(field_of(r#"{}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","inner":{"n":1,"x":2}}"#), "inner.x");
        assert_eq!(field_of(r#"{"name":5}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","name":"b"}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","inner":{"n":1,"n":2}}"#), "inner.n");
    }

    #[test]
    fn if_match_is_a_star_a_bare_version_or_a_list_of_entity_tags_compared_strongly() {
        let one_of = |v: &[u64]| Some(ExpectedVersion::OneOf(v.to_vec()));
        assert_eq!(parse_if_match("*"), Some(ExpectedVersion::Any));
        assert_eq!(parse_if_match(" * "), Some(ExpectedVersion::Any));
        assert_eq!(parse_if_match("\"3\""), one_of(&[3]));
        assert_eq!(parse_if_match("3"), one_of(&[3]));
        assert_eq!(parse_if_match("\"5\", \"3\",\"5\""), one_of(&[5, 3]));
        // Weak tags, tags that are not a version as the ETag writes it: valid, and never matching.
        assert_eq!(parse_if_match("W/\"3\""), one_of(&[]));
        assert_eq!(parse_if_match("W/\"3\", \"4\""), one_of(&[4]));
        assert_eq!(parse_if_match("\"abc\", \"03\", \"\""), one_of(&[]));
        assert_eq!(parse_if_match("\"99999999999999999999999\""), one_of(&[]));
        for bad in [
            "",
            "abc",
            "\"3",
            "3\"",
            "\"3\" \"4\"",
            "\"3\",",
            ",\"3\"",
            "\"3\",,\"4\"",
            "\"3\", *",
            "w/\"3\"",
            "\"a b\"",
        ] {
            assert_eq!(parse_if_match(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bodies_are_objects_never_arrays_of_their_fields() {
        let err = parse_json::<Object<Body>>(br#"["a", null]"#).unwrap_err();
        assert_eq!(err.errors[0].field, "body");
        assert!(err.errors[0].message.contains("expected a JSON object"));
        assert!(parse_json::<Object<Body>>(b"null").is_err());
        let Object(body) = parse_json::<Object<Body>>(br#"{"name":"a"}"#).unwrap();
        assert_eq!(body.name, "a");
        // Paths still name the field inside.
        let err = parse_json::<Object<Body>>(br#"{"name":"a","inner":{"n":1,"x":2}}"#).unwrap_err();
        assert_eq!(err.errors[0].field, "inner.x");
    }

    #[test]
    fn syntax_errors_have_no_field() {
        let err = parse_json::<Body>(b"{not json").unwrap_err();
        assert!(err.errors.is_empty());
        assert!(err.detail.contains("not valid JSON"));
        assert!(parse_json::<Body>(br#"{"name":"a"} trailing"#).is_err());
    }
}
