//! Google Drive API v3, emulated from its reference (https://developers.google.com/drive/api/reference/rest/v3)
//! and guides (downloads and exports: https://developers.google.com/drive/api/guides/manage-downloads; partial
//! responses: https://developers.google.com/drive/api/guides/fields-parameter; errors and limits:
//! https://developers.google.com/drive/api/guides/handle-errors, …/limits). Under `/google`:
//!
//! - `Authorization: Bearer <access token>`; anything else is a 401 `authError`.
//! - `GET /drive/v3/files`: the tree of `files.rs` as Drive files (folders first, then files, in index order),
//!   `pageSize` 1–1000 (default 100), `pageToken` ← `nextPageToken` (opaque), `q` (only `trashed = false` is
//!   understood; anything else is a 400, as an unsupported query is), `fields` applied as a partial response:
//!   a `fields` without `nextPageToken` gets no `nextPageToken`. Default fields: `kind`, `nextPageToken`,
//!   `incompleteSearch`, `files(kind,id,name,mimeType)`.
//! - `GET /drive/v3/files/{id}?alt=media`: a blob's bytes; Google's own types answer 403 `fileNotDownloadable`.
//!   `GET /drive/v3/files/{id}/export?mimeType=…`: Google types only (a blob answers 403 `fileNotExportable`),
//!   to the formats Drive documents for each type (another answers 400 `badRequest`), at most 10 MB (403
//!   `exportSizeLimitExceeded`). A deleted file answers 404 `notFound` ("File not found: <id>.").
//! - `GET /drive/v3/files/{id}/permissions` (pageSize ≤ 100), `/revisions` (≤ 1000; a folder answers 403
//!   `revisionsNotSupported`), `/comments` (≤ 100; without `fields` a 400 `required`, as Drive requires it
//!   for comments), `GET /drive/v3/drives` (≤ 100; the data set `shared_drives`).
//! - `GET /oauth2/v3/userinfo`: the user (`sub`, `email`).
//! - Writes (a restore's, https://developers.google.com/drive/api/guides/manage-uploads and
//!   …/folder): `POST /drive/v3/files` with JSON metadata creates a folder (`mimeType`
//!   `application/vnd.google-apps.folder`) or an empty file; `POST /upload/drive/v3/files?uploadType=multipart`
//!   takes a `multipart/related` body (the JSON metadata part, then the media part); `uploadType=resumable`
//!   takes the metadata (with `X-Upload-Content-Length`) and answers `200` with the session URI in
//!   `Location`, where a `PUT` of every byte answers the file (a size other than the announced one is a
//!   400); a `PUT` with `Content-Range: bytes <first>-<last>/<size>` sends bytes from `first` (at most the
//!   bytes received: those received already are not taken twice), and an empty one with `bytes */<size>`
//!   asks how far the upload got: `308` with `Range: bytes=0-<last>` (no `Range`: no byte yet) until every
//!   byte arrived, then the file again (https://developers.google.com/drive/api/guides/manage-uploads#resumable).
//!   An unknown (or expired) session is 404. Faults: a `PUT` that breaks after some bytes, keeping those
//!   ([`PlatformApi::google_cut_next_upload`](crate::PlatformApi::google_cut_next_upload)), a session found
//!   expired by a status query
//!   ([`PlatformApi::google_expire_next_status_query`](crate::PlatformApi::google_expire_next_status_query)).
//!   `parents` names one folder (`root` is My Drive's alias; missing: My Drive); a parent that does not
//!   exist is 404 `notFound`. Drive lets names repeat: nothing is ever overwritten. Created items are listed
//!   and downloaded like the rest (`md5Checksum`: the first 32 hex digits of their sha256, a version only).
//! - Errors `{"error":{"code":…,"message":…,"errors":[{"domain":…,"reason":…,"message":…}]}}`; rate limiting
//!   as 429 `rateLimitExceeded` (`rate_limit_next`) or 403 `userRateLimitExceeded`
//!   ([`PlatformApi::google_rate_limit_next`](crate::PlatformApi::google_rate_limit_next)).

use std::collections::HashSet;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use crate::files::{FileTree, FilesState, Selection};
use crate::{bearer, iso_ms, param, Query, State, EPOCH_MS};

const FOLDER: &str = "application/vnd.google-apps.folder";
const GOOGLE_TYPES: &str = "application/vnd.google-apps.";
const ROOT: &str = "0AExampleRootFolderUk9PVA";
/// "The exported content is limited to 10MB."
const EXPORT_LIMIT: u64 = 10 * 1024 * 1024;

/// The id of file `index`.
pub(crate) fn file_id(index: u64) -> String {
    format!("1fiLE{index:012}AbCdEfGhIjKlMn")
}

fn folder_id(f: u64) -> String {
    if f == 0 {
        ROOT.to_owned()
    } else {
        format!("1foLD{f:012}AbCdEfGhIjKlMn")
    }
}

/// Drive's error body.
pub(crate) fn error(status: u16, reason: &str, message: &str) -> Value {
    json!({"error": {"code": status, "message": message,
        "errors": [{"domain": if reason == "userRateLimitExceeded" || reason == "rateLimitExceeded"
            { "usageLimits" } else { "global" }, "reason": reason, "message": message}]}})
}

fn fail(status: u16, reason: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(error(status, reason, message))
}

fn not_found(id: &str) -> HttpResponse {
    fail(404, "notFound", &format!("File not found: {id}."))
}

/// One listed item: a folder or a file.
#[derive(Clone, Copy)]
enum Item {
    Folder(u64),
    File(u64),
}

/// Which item an id names.
fn item_of(tree: &FileTree, id: &str) -> Option<Item> {
    let number = |prefix: &str| {
        id.strip_prefix(prefix)?
            .strip_suffix("AbCdEfGhIjKlMn")?
            .parse::<u64>()
            .ok()
    };
    if let Some(f) = number("1foLD").filter(|f| *f >= 1 && *f <= tree.folders) {
        return Some(Item::Folder(f));
    }
    number("1fiLE").filter(|i| tree.exists(*i)).map(Item::File)
}

/// A created folder or file as a Drive resource.
fn created_resource(created: &crate::files::Created) -> Value {
    let mime = created
        .mime_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let mut file = json!({"kind": "drive#file", "id": created.id, "name": created.name, "mimeType": mime,
        "parents": [created.parent], "trashed": false, "starred": false, "version": "1",
        "createdTime": iso_ms(EPOCH_MS), "modifiedTime": iso_ms(EPOCH_MS), "shared": false, "ownedByMe": true,
        "owners": [{"kind": "drive#user", "displayName": "Owner", "emailAddress": "owner@example.com", "me": true}],
        "capabilities": {"canDownload": true, "canListChildren": created.is_folder()}});
    if let Some(bytes) = &created.bytes {
        if !mime.starts_with(GOOGLE_TYPES) {
            file["size"] = json!(bytes.len().to_string());
            file["md5Checksum"] = json!(created.sha256()[..32]);
            file["headRevisionId"] = json!(format!("0B{}r0", created.id));
            file["originalFilename"] = json!(created.name);
        }
    }
    file
}

/// The created item's id for the `n`th creation.
fn created_id(n: usize) -> String {
    format!("1cReAtEd{n:012}AbCdEfGhIj")
}

/// Applies the `fields` of a write's answer (default `kind,id,name,mimeType`).
fn answer_fields(query: &Query, resource: Value) -> HttpResponse {
    let fields = param(query, "fields").unwrap_or("kind,id,name,mimeType");
    match Selection::parse(fields) {
        Ok(selection) => HttpResponse::Ok().json(selection.apply(resource)),
        Err(why) => fail(400, "invalidParameter", &why),
    }
}

/// Creates an item from `metadata` (and `bytes` for a file with content): the checks Drive makes first.
fn create(
    tree: &mut FileTree,
    query: &Query,
    metadata: &Value,
    bytes: Option<Vec<u8>>,
) -> HttpResponse {
    let Some(metadata) = metadata.as_object() else {
        return fail(400, "badRequest", "Invalid JSON payload received.");
    };
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("Untitled")
        .to_owned();
    let mime = metadata
        .get("mimeType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let parent = match metadata.get("parents") {
        None => ROOT.to_owned(),
        Some(Value::Array(parents)) if parents.len() == 1 => {
            match parents[0].as_str().unwrap_or_default() {
                "root" => ROOT.to_owned(),
                id => id.to_owned(),
            }
        }
        Some(_) => {
            return fail(
                403,
                "cannotAddParent",
                "Increasing the number of parents is not allowed.",
            )
        }
    };
    let parent_is_folder = parent == ROOT
        || matches!(item_of(tree, &parent), Some(Item::Folder(_)))
        || tree.created(&parent).is_some_and(|c| c.is_folder());
    if !parent_is_folder {
        return not_found(&parent);
    }
    let folder = mime.as_deref() == Some(FOLDER);
    if folder && bytes.is_some() {
        return fail(400, "badRequest", "A folder has no content.");
    }
    let created = crate::files::Created {
        id: created_id(tree.created.len()),
        name,
        parent,
        bytes: if folder {
            None
        } else {
            Some(bytes.unwrap_or_default())
        },
        mime_type: Some(mime.unwrap_or_else(|| "application/octet-stream".to_owned())),
    };
    tree.created.push(created.clone());
    answer_fields(query, created_resource(&created))
}

/// A resumable upload session (`uploadType=resumable`).
#[derive(Debug, Clone)]
pub(crate) struct ResumableSession {
    metadata: Value,
    /// `X-Upload-Content-Length`, if given.
    size: Option<u64>,
    /// The bytes received so far, from the first.
    received: Vec<u8>,
    /// The file made once every byte arrived: asked again, the session answers it.
    created: Option<crate::files::Created>,
}

/// What a `PUT` to a resumable session's URI says in `Content-Range`.
enum PutRange {
    /// No `Content-Range`: every byte, from the first.
    Whole,
    /// `bytes */<size>`: how far has the upload got?
    Status(u64),
    /// `bytes <first>-<last>/<size>`.
    Bytes(u64, u64, u64),
}

fn put_range(req: &HttpRequest) -> Result<PutRange, HttpResponse> {
    let Some(range) = crate::header(req, "Content-Range") else {
        return Ok(PutRange::Whole);
    };
    let refused = || fail(400, "badRequest", "Failed to parse Content-Range header.");
    let (span, size) = range
        .trim()
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(refused)?;
    let size = size.parse::<u64>().map_err(|_| refused())?;
    if span == "*" {
        return Ok(PutRange::Status(size));
    }
    let (first, last) = span.split_once('-').ok_or_else(refused)?;
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last && last < size => {
            Ok(PutRange::Bytes(first, last, size))
        }
        _ => Err(refused()),
    }
}

/// Where a resumable session stands: `308 Resume Incomplete` with `Range: bytes=0-<last>` (none before the
/// first byte), or the file made.
fn session_state(query: &Query, session: &ResumableSession) -> HttpResponse {
    if let Some(created) = &session.created {
        return answer_fields(query, created_resource(created));
    }
    let mut incomplete = HttpResponse::build(actix_web::http::StatusCode::PERMANENT_REDIRECT);
    if !session.received.is_empty() {
        incomplete.insert_header(("Range", format!("bytes=0-{}", session.received.len() - 1)));
    }
    incomplete.finish()
}

/// A `PUT` to a resumable session's URI
/// (https://developers.google.com/drive/api/guides/manage-uploads#resume-upload): the bytes from the first
/// (no `Content-Range`) or from where `Content-Range` says (at most the bytes received: bytes received
/// already are not taken twice), or a status query (`bytes */<size>`, no body). The answer is the file once
/// every byte arrived, else `308`; an unknown or expired session is 404.
fn resumable_put(state: &mut State, req: &HttpRequest, query: &Query, body: &[u8]) -> HttpResponse {
    let FilesState {
        trees,
        google_sessions,
        google_cut_next_put,
        google_expire_next_query,
        google_bytes_received,
        ..
    } = &mut state.files;
    let tree = trees.entry("google".to_owned()).or_default();
    let id = param(query, "upload_id").unwrap_or_default();
    let range = match put_range(req) {
        Ok(range) => range,
        Err(refused) => return refused,
    };
    if matches!(range, PutRange::Status(_)) && std::mem::take(google_expire_next_query) {
        google_sessions.remove(id);
    }
    let Some(session) = google_sessions.get_mut(id) else {
        return fail(404, "notFound", "No such upload session.");
    };
    if session.created.is_some() {
        return session_state(query, session);
    }
    let (first, size) = match range {
        PutRange::Status(size) | PutRange::Bytes(_, _, size)
            if session.size.is_some_and(|announced| announced != size) =>
        {
            return fail(
                400,
                "badRequest",
                "The uploaded size differs from the announced one.",
            )
        }
        PutRange::Status(_) if !body.is_empty() => {
            return fail(400, "badRequest", "A status query has no body.")
        }
        PutRange::Status(_) => return session_state(query, session),
        PutRange::Bytes(first, last, size) => {
            if last - first + 1 != body.len() as u64 {
                return fail(
                    400,
                    "badRequest",
                    "The body's length differs from the Content-Range.",
                );
            }
            (first, size)
        }
        PutRange::Whole => (0, session.size.unwrap_or(body.len() as u64)),
    };
    let held = session.received.len() as u64;
    if first > held {
        return fail(400, "badRequest", &format!(
            "Invalid request. According to the Content-Range header, the upload offset is {first} byte(s), \
             which exceeds already uploaded size of {held} byte(s)."));
    }
    // The connection breaks after `cut` bytes: those arrived.
    let cut = google_cut_next_put.take();
    let arrived = &body[..cut.map_or(body.len(), |cut| body.len().min(cut as usize))];
    *google_bytes_received += arrived.len() as u64;
    // Bytes Drive holds already are not taken twice.
    let new = arrived.get((held - first) as usize..).unwrap_or_default();
    if held + new.len() as u64 > size {
        return fail(
            400,
            "badRequest",
            "The uploaded size differs from the announced one.",
        );
    }
    session.received.extend_from_slice(new);
    if session.received.len() as u64 == size {
        let metadata = session.metadata.clone();
        let bytes = std::mem::take(&mut session.received);
        let made = create(tree, query, &metadata, Some(bytes));
        if made.status().is_success() {
            session.created = tree.created.last().cloned();
        }
        if cut.is_some() {
            return crate::faults::lost_answer();
        }
        return made;
    }
    if cut.is_some() {
        return crate::faults::lost_answer();
    }
    session_state(query, session)
}

/// `POST /upload/drive/v3/files` and the `PUT`s of a resumable session.
fn upload(state: &mut State, req: &HttpRequest, query: &Query, body: &[u8]) -> HttpResponse {
    if req.method() == Method::PUT {
        return resumable_put(state, req, query, body);
    }
    let FilesState {
        trees,
        google_sessions,
        ..
    } = &mut state.files;
    let tree = trees.entry("google".to_owned()).or_default();
    if req.method() != Method::POST {
        return fail(405, "httpMethodNotAllowed", "Method Not Allowed");
    }
    match param(query, "uploadType") {
        Some("multipart") => {
            let content_type = crate::header(req, "Content-Type").unwrap_or_default();
            let Some(parts) =
                crate::files::multipart_parts("multipart/related", content_type, body)
            else {
                return fail(400, "badContent", "Invalid multipart request.");
            };
            let [(meta_headers, metadata), (_, media)] = parts.as_slice() else {
                return fail(
                    400,
                    "badContent",
                    "Invalid multipart request with 0 mime parts.",
                );
            };
            if !meta_headers
                .to_ascii_lowercase()
                .contains("application/json")
            {
                return fail(400, "badContent", "The metadata part must be JSON.");
            }
            let Ok(metadata) = serde_json::from_slice::<Value>(metadata) else {
                return fail(400, "parseError", "Parse Error");
            };
            create(tree, query, &metadata, Some(media.clone()))
        }
        Some("resumable") => {
            let metadata = if body.is_empty() {
                json!({})
            } else {
                match serde_json::from_slice::<Value>(body) {
                    Ok(metadata) => metadata,
                    Err(_) => return fail(400, "parseError", "Parse Error"),
                }
            };
            let size = crate::header(req, "X-Upload-Content-Length").and_then(|v| v.parse().ok());
            let id = format!("ADPycdv{:016x}", rand::random::<u64>());
            google_sessions.insert(
                id.clone(),
                ResumableSession {
                    metadata,
                    size,
                    received: Vec::new(),
                    created: None,
                },
            );
            let location = format!(
                "{}://{}/google/upload/drive/v3/files?uploadType=resumable&upload_id={id}",
                req.connection_info().scheme(),
                req.connection_info().host()
            );
            HttpResponse::Ok()
                .insert_header(("Location", location))
                .finish()
        }
        Some("media") => create(tree, query, &json!({}), Some(body.to_vec())),
        _ => fail(400, "invalid", "Invalid value for uploadType"),
    }
}

fn mime_of(tree: &FileTree, item: Item) -> &'static str {
    match item {
        Item::Folder(_) => FOLDER,
        Item::File(i) => tree
            .kinds
            .get(&i)
            .copied()
            .unwrap_or("application/octet-stream"),
    }
}

fn resource(tree: &FileTree, item: Item) -> Value {
    let mime = mime_of(tree, item);
    match item {
        Item::Folder(f) => {
            json!({"kind": "drive#file", "id": folder_id(f), "name": format!("Folder {f}"),
            "mimeType": mime, "parents": [folder_id(FileTree::parent_of_folder(f))], "trashed": false,
            "starred": false, "version": "1", "createdTime": iso_ms(EPOCH_MS + f as i64 * 1000),
            "modifiedTime": iso_ms(EPOCH_MS + f as i64 * 1000), "ownedByMe": true,
            "owners": [{"kind": "drive#user", "displayName": "Owner", "emailAddress": "owner@example.com", "me": true}],
            "capabilities": {"canDownload": true, "canListChildren": true}})
        }
        Item::File(i) => {
            let generation = i64::from(tree.generation_of(i));
            let mut file = json!({"kind": "drive#file", "id": file_id(i),
                "name": format!("file-{i:06}"), "mimeType": mime,
                "parents": [folder_id(tree.folder_of_file(i))], "trashed": tree.trashed.contains(&i),
                "starred": false, "version": (generation + 1).to_string(),
                "createdTime": iso_ms(EPOCH_MS + i as i64 * 1000),
                "modifiedTime": iso_ms(EPOCH_MS + i as i64 * 1000 + generation * 86_400_000),
                "shared": i % 2 == 0, "ownedByMe": true,
                "owners": [{"kind": "drive#user", "displayName": "Owner", "emailAddress": "owner@example.com", "me": true}],
                "capabilities": {"canDownload": true}});
            if !mime.starts_with(GOOGLE_TYPES) {
                file["size"] = json!(tree.size_of(i).to_string());
                file["md5Checksum"] = json!(tree.checksum(i, 32));
                file["headRevisionId"] = json!(format!("0B{i:06}r{generation}"));
                file["originalFilename"] = json!(format!("file-{i:06}.bin"));
            }
            file
        }
    }
}

/// Drive's page size parameter: 1 to `max`, `default` when absent.
fn page_size(query: &Query, max: u64, default: u64) -> Result<u64, HttpResponse> {
    match param(query, "pageSize").map(str::parse::<u64>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(fail(400, "invalid", "Invalid value for pageSize")),
    }
}

/// An opaque page token for a position, and back.
fn token(position: u64) -> String {
    format!(
        "~!!~{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p{position}"))
    )
}

fn position(query: &Query) -> Result<u64, HttpResponse> {
    let Some(raw) = param(query, "pageToken") else {
        return Ok(0);
    };
    raw.strip_prefix("~!!~")
        .and_then(|b| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b)
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.strip_prefix('p').and_then(|n| n.parse().ok()))
        .ok_or_else(|| fail(400, "invalid", "Invalid Value"))
}

/// A page of `items` as Drive answers a list: `{kind, nextPageToken?, <name>: […]}` with `fields` applied
/// (or the default selection).
fn list(
    query: &Query,
    kind: &str,
    name: &str,
    items: Vec<Value>,
    size: u64,
    default_fields: &str,
) -> HttpResponse {
    let start = match position(query) {
        Ok(p) => p as usize,
        Err(e) => return e,
    };
    let end = (start + size as usize).min(items.len());
    let page: Vec<Value> = items
        .get(start.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let mut answer = json!({"kind": kind, "incompleteSearch": false, name: page});
    if end < items.len() {
        answer["nextPageToken"] = json!(token(end as u64));
    }
    let fields = param(query, "fields").unwrap_or(default_fields);
    match Selection::parse(fields) {
        Ok(selection) => HttpResponse::Ok().json(selection.apply(answer)),
        Err(why) => fail(
            400,
            "invalidParameter",
            &format!("Invalid field selection {fields}: {why}"),
        ),
    }
}

/// The formats Drive exports each Google type to
/// (https://developers.google.com/drive/api/guides/ref-export-formats), a few of each.
fn export_formats(mime: &str) -> &'static [&'static str] {
    match mime {
        "application/vnd.google-apps.document" => &[
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/pdf",
            "text/plain",
            "application/vnd.oasis.opendocument.text",
        ],
        "application/vnd.google-apps.spreadsheet" => &[
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/pdf",
            "text/csv",
        ],
        "application/vnd.google-apps.presentation" => &[
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/pdf",
        ],
        "application/vnd.google-apps.drawing" => &["application/pdf", "image/png", "image/svg+xml"],
        "application/vnd.google-apps.script" => &["application/vnd.google-apps.script+json"],
        _ => &[],
    }
}

pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    accepted: &HashSet<String>,
) -> HttpResponse {
    if !bearer(req).is_some_and(|token| accepted.contains(token)) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"https://accounts.google.com/\""))
            .json(json!({"error": {"code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                    "location": "Authorization", "locationType": "header"}],
                "status": "UNAUTHENTICATED"}}));
    }
    if state.files.google_rate_limited > 0 {
        state.files.google_rate_limited -= 1;
        return fail(403, "userRateLimitExceeded", "User Rate Limit Exceeded");
    }
    if rest == "/upload/drive/v3/files" {
        return upload(state, req, query, body);
    }
    if rest == "/drive/v3/files" && req.method() == Method::POST {
        let Ok(metadata) = serde_json::from_slice::<Value>(body) else {
            return fail(400, "parseError", "Parse Error");
        };
        return create(state.files.tree("google"), query, &metadata, None);
    }
    if req.method() != Method::GET {
        return fail(405, "httpMethodNotAllowed", "Method Not Allowed");
    }
    if rest == "/oauth2/v3/userinfo" {
        return HttpResponse::Ok()
            .json(json!({"sub": "109876543210987654321", "email": "owner@example.com", "email_verified": true}));
    }
    if rest == "/drive/v3/drives" {
        let size = match page_size(query, 100, 10) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let count = state.dataset("google", "shared_drives").count;
        let drives = (0..count)
            .map(|i| json!({"kind": "drive#drive", "id": format!("0ADrive{i:06}Uk9PVA"),
                "name": format!("Shared drive {i}"), "createdTime": iso_ms(EPOCH_MS + i as i64 * 1000),
                "hidden": false, "restrictions": {"domainUsersOnly": false}}))
            .collect();
        return list(
            query,
            "drive#driveList",
            "drives",
            drives,
            size,
            "kind,nextPageToken,drives(kind,id,name)",
        );
    }
    let FilesState {
        trees, cut_next, ..
    } = &mut state.files;
    let tree = trees.entry("google".to_owned()).or_default();
    let Some(path) = rest.strip_prefix("/drive/v3/files") else {
        return fail(404, "notFound", "Not Found");
    };
    if path.is_empty() {
        return files_list(tree, query);
    }
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let id = segments.next().unwrap_or_default();
    let sub = segments.next();
    if let Some(created) = tree.created(id).cloned() {
        return match sub {
            None if param(query, "alt") == Some("media") => match created.bytes {
                Some(bytes) => HttpResponse::Ok()
                    .content_type("application/octet-stream")
                    .body(bytes),
                None => fail(
                    403,
                    "fileNotDownloadable",
                    "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                ),
            },
            None => answer_fields(query, created_resource(&created)),
            Some("permissions" | "revisions" | "comments") => {
                let name = sub.unwrap_or_default();
                if name == "comments" && param(query, "fields").is_none() {
                    return fail(
                        400,
                        "required",
                        "The 'fields' parameter is required for this method.",
                    );
                }
                list(
                    query,
                    &format!("drive#{}List", name.trim_end_matches('s')),
                    name,
                    Vec::new(),
                    100,
                    "kind,nextPageToken",
                )
            }
            _ => fail(404, "notFound", "Not Found"),
        };
    }
    let Some(item) = item_of(tree, id) else {
        return not_found(id);
    };
    let mime = mime_of(tree, item);
    // Deleted after it was listed: its own lists are gone too.
    if let (Some(_), Item::File(i)) = (sub, item) {
        if tree.vanished.contains(&i) {
            return not_found(id);
        }
    }
    match (sub, item) {
        (None, Item::File(i)) if param(query, "alt") == Some("media") => {
            if mime.starts_with(GOOGLE_TYPES) {
                return fail(403, "fileNotDownloadable",
                    "Only files with binary content can be downloaded. Use Export with Docs Editors files.");
            }
            if tree.vanished.contains(&i) {
                return not_found(id);
            }
            tree.downloaded(i);
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .body(tree.bytes_of(i, cut_next.remove("google")))
        }
        (None, Item::Folder(_)) if param(query, "alt") == Some("media") => fail(
            403,
            "fileNotDownloadable",
            "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
        ),
        (None, _) => {
            let fields = param(query, "fields").unwrap_or("kind,id,name,mimeType");
            match Selection::parse(fields) {
                Ok(selection) => HttpResponse::Ok().json(selection.apply(resource(tree, item))),
                Err(why) => fail(400, "invalidParameter", &why),
            }
        }
        (Some("export"), Item::File(i)) => {
            let Some(format) = param(query, "mimeType") else {
                return fail(400, "required", "Required parameter: mimeType");
            };
            if !mime.starts_with(GOOGLE_TYPES) {
                return fail(
                    403,
                    "fileNotExportable",
                    "Export only supports Docs Editors files.",
                );
            }
            if !export_formats(mime).contains(&format) {
                return fail(
                    400,
                    "badRequest",
                    "The requested conversion is not supported.",
                );
            }
            if tree.vanished.contains(&i) {
                return not_found(id);
            }
            if tree.size_of(i) > EXPORT_LIMIT {
                return fail(
                    403,
                    "exportSizeLimitExceeded",
                    "This file is too large to be exported.",
                );
            }
            tree.downloaded(i);
            HttpResponse::Ok()
                .content_type(format.to_owned())
                .body(tree.bytes_of(i, cut_next.remove("google")))
        }
        (Some("export"), Item::Folder(_)) => fail(
            403,
            "fileNotExportable",
            "Export only supports Docs Editors files.",
        ),
        (Some("permissions"), item) => {
            let size = match page_size(query, 100, 100) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let mut permissions = vec![
                json!({"kind": "drive#permission", "id": "01234567890123456789",
                "type": "user", "role": "owner", "emailAddress": "owner@example.com",
                "displayName": "Owner", "deleted": false, "pendingOwner": false}),
            ];
            if matches!(item, Item::File(i) if i % 2 == 0) {
                permissions.push(json!({"kind": "drive#permission", "id": "anyoneWithLink",
                    "type": "anyone", "role": "reader", "allowFileDiscovery": false}));
            }
            list(
                query,
                "drive#permissionList",
                "permissions",
                permissions,
                size,
                "kind,nextPageToken,permissions(kind,id,type,role)",
            )
        }
        (Some("revisions"), Item::Folder(_)) => fail(
            403,
            "revisionsNotSupported",
            "The file does not support revisions.",
        ),
        (Some("revisions"), Item::File(i)) => {
            let size = match page_size(query, 1000, 200) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let blob = !mime.starts_with(GOOGLE_TYPES);
            let revisions = (0..=tree.generation_of(i))
                .map(|r| {
                    let mut revision = json!({"kind": "drive#revision", "id": format!("0B{i:06}r{r}"),
                        "mimeType": mime, "modifiedTime": iso_ms(EPOCH_MS + i as i64 * 1000 + i64::from(r) * 86_400_000),
                        "keepForever": false, "published": false});
                    if blob {
                        revision["size"] = json!(tree.size_of(i).to_string());
                        revision["originalFilename"] = json!(format!("file-{i:06}.bin"));
                    }
                    revision
                })
                .collect();
            list(
                query,
                "drive#revisionList",
                "revisions",
                revisions,
                size,
                "kind,nextPageToken,revisions(kind,id,mimeType,modifiedTime)",
            )
        }
        (Some("comments"), item) => {
            if param(query, "fields").is_none() {
                return fail(
                    400,
                    "required",
                    "The 'fields' parameter is required for this method.",
                );
            }
            let size = match page_size(query, 100, 20) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let comments = match item {
                Item::File(i) if i % 3 == 0 => vec![json!({"kind": "drive#comment",
                    "id": format!("AAAA{i:06}"), "content": "Looks good", "htmlContent": "Looks good",
                    "author": {"kind": "drive#user", "displayName": "Reviewer", "me": false},
                    "createdTime": iso_ms(EPOCH_MS + i as i64 * 1000), "modifiedTime": iso_ms(EPOCH_MS + i as i64 * 1000),
                    "resolved": false, "deleted": false,
                    "replies": [{"kind": "drive#reply", "id": format!("AAAB{i:06}"), "content": "Thanks",
                        "createdTime": iso_ms(EPOCH_MS + i as i64 * 1000 + 60_000), "deleted": false}]})],
                _ => Vec::new(),
            };
            list(
                query,
                "drive#commentList",
                "comments",
                comments,
                size,
                "kind,comments",
            )
        }
        _ => fail(404, "notFound", "Not Found"),
    }
}

fn files_list(tree: &FileTree, query: &Query) -> HttpResponse {
    let size = match page_size(query, 1000, 100) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // Only the bin's filter is understood: any other query is refused rather than misread.
    let skip_trashed = match param(query, "q") {
        None => false,
        Some(q) if q.split_whitespace().collect::<String>() == "trashed=false" => true,
        Some(_) => return fail(400, "invalid", "Invalid Value"),
    };
    let items: Vec<Value> = (1..=tree.folders)
        .map(Item::Folder)
        .chain(
            tree.listed()
                .filter(|i| !(skip_trashed && tree.trashed.contains(i)))
                .map(Item::File),
        )
        .map(|item| resource(tree, item))
        .chain(tree.created.iter().map(created_resource))
        .collect();
    list(
        query,
        "drive#fileList",
        "files",
        items,
        size,
        "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)",
    )
}

/// google in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "google",
    base_path: || "/google".to_owned(),
    serve: |state, call| {
        answer(
            state,
            call.req,
            call.rest,
            call.query,
            call.body,
            call.accepted,
        )
    },
    rate_limited_body: || crate::files::rate_limited_body("google"),
    error_body: |status| {
        crate::files::error_body(
            "google",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
        )
    },
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};
