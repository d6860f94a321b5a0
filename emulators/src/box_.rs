//! Box API 2.0, emulated from its reference (https://developer.box.com/reference/: list items in folder,
//! download file, list file versions, list file comments, list tasks on file, list folder collaborations,
//! get current user; errors: https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/).
//! Under `/box/2.0`, the download host under `/box/dl` on **another host name** (`localhost` where the API is
//! `127.0.0.1`):
//!
//! - `Authorization: Bearer <access token>`; otherwise 401 with an empty body and `WWW-Authenticate`.
//! - `GET /folders/{id}/items` (`0` is "All Files"): the folders, web links and files directly in the folder
//!   (`files.rs` tree), `limit` ≤ 1000 (default 100; more is a 400), with `usemarker=true` paged by `marker`
//!   ← `next_marker` (`{"entries", "limit", "next_marker"}`, `next_marker` null on the last page), otherwise by
//!   `offset` with `total_count`. `fields`: the mini representation (`type`, `id`, `etag`, `sequence_id`,
//!   `name`) plus the fields named, as Box documents.
//! - `GET /files/{id}/content`: `302 Found` to `http://localhost:<port>/box/dl/<token>`, a pre-signed URL (the
//!   token is the credential). The download host refuses a request carrying `Authorization` (400, counted:
//!   [`PlatformApi::box_authorized_downloads`](crate::PlatformApi::box_authorized_downloads)) and one that did
//!   not come to it by its own host name. `202 Accepted` with `Retry-After: 1` when asked
//!   ([`PlatformApi::box_not_ready_next`](crate::PlatformApi::box_not_ready_next)).
//! - `GET /files/{id}/versions` and `/comments`: offset paged (`limit` ≤ 1000) with `total_count`;
//!   `/tasks`: `{"total_count", "entries"}` in one answer; `GET /folders/{id}/collaborations`: marker paged.
//! - `GET /users/me`.
//! - Writes (a restore's): `POST /folders` `{"name", "parent": {"id"}}` → 201 with the folder; and, on the
//!   upload host (`upload.box.com/api/2.0`, here `/box/upload/api/2.0`), `POST /files/content`, a
//!   `multipart/form-data` body whose `attributes` part (`{"name", "parent": {"id"}}`) comes before the
//!   `file` part (the other way round is 400 `metadata_after_file_contents`) → 201 `{"total_count": 1, "entries": [file]}`. A name in use
//!   in the folder (any case) is 409 `item_name_in_use` with the item in `context_info.conflicts`; a parent
//!   that does not exist 404; a name that is empty, over 255 characters, `.`/`..` or holds `/` or `\\` 400
//!   `bad_request`. What is created is listed, walked and downloaded like the rest (its `sha1` is the hex
//!   sha256 of its bytes cut to 40 digits, not a SHA-1: the connectors compare it, never recompute it).
//! - Chunked uploads on the upload host (https://developer.box.com/guides/uploads/chunked/):
//!   `POST /files/upload_sessions` `{"folder_id", "file_size", "file_name"}` (the preflight checks above)
//!   → 201 `{"id", "part_size", "total_parts", "session_endpoints", …}`, `part_size` 8 MiB unless a test sets
//!   it ([`PlatformApi::set_box_part_size`](crate::PlatformApi::set_box_part_size)); `PUT
//!   /files/upload_sessions/{id}` with `Content-Range: bytes a-b/size` (a multiple of the part size, every
//!   part exactly the part size but the last; otherwise 416 `requested_range_not_satisfiable`) and
//!   `Digest: sha=<base64 SHA-1>` (otherwise 412 `sha1_mismatch`) → `{"part": {"part_id", "offset", "size",
//!   "sha1"}}`, the same part again answered the same, other bytes at its offset 409
//!   `range_overlaps_existing_part`; `POST /files/upload_sessions/{id}/commit` with the whole file's
//!   `Digest` and `{"parts": [...]}` exactly as answered (otherwise 412) → 201 `{"total_count": 1, "entries":
//!   [file]}`, the file stored like a direct upload's; `DELETE` aborts. Faults: the next parts answered 503
//!   ([`PlatformApi::box_reject_parts_next`](crate::PlatformApi::box_reject_parts_next)), the next commits
//!   202 with `Retry-After: 1`
//!   ([`PlatformApi::box_commit_pending_next`](crate::PlatformApi::box_commit_pending_next)).
//! - Errors `{"type":"error","status":…,"code":…,"message":…,"request_id":…}`; 429 with `Retry-After`.

use std::collections::HashSet;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use crate::files::{FileTree, FilesState};
use crate::{bearer, header, iso_ms, param, Query, State, EPOCH_MS};

const FILE_BASE: u64 = 1_000_000_000;
const FOLDER_BASE: u64 = 5_000_000_000;
const LINK_BASE: u64 = 8_000_000_000;
/// Items created through the API: `CREATED_BASE + n`.
const CREATED_BASE: u64 = 9_000_000_000;

fn created_id(n: usize) -> String {
    (CREATED_BASE + n as u64).to_string()
}

/// The mini representation of folder `id`, generated or created.
fn mini_folder_of(tree: &FileTree, id: &str) -> Value {
    match folder_index(tree, id) {
        Some(f) => mini_folder(f),
        None => {
            let name = tree.created(id).map(|c| c.name.clone()).unwrap_or_default();
            json!({"type": "folder", "id": id, "sequence_id": "0", "etag": "0", "name": name})
        }
    }
}

/// The path collection of folder `id` (it included), generated or created.
fn path_collection_of(tree: &FileTree, id: &str) -> Value {
    if let Some(f) = folder_index(tree, id) {
        return path_collection(f);
    }
    let mut chain = Vec::new();
    let mut at = id.to_owned();
    while let Some(created) = tree.created(&at).filter(|c| c.is_folder()) {
        chain.push(mini_folder_of(tree, &at));
        at = created.parent.clone();
    }
    chain.reverse();
    let mut entries = path_collection_of(tree, &at)["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.extend(chain);
    json!({"total_count": entries.len(), "entries": entries})
}

/// A created folder or file, in the same shape as the generated ones.
fn created_item(tree: &FileTree, created: &crate::files::Created) -> Value {
    let at = iso_ms(EPOCH_MS);
    let common = json!({"id": created.id, "sequence_id": "0", "etag": "0", "name": created.name,
        "description": "", "path_collection": path_collection_of(tree, &created.parent), "created_at": at,
        "modified_at": at, "trashed_at": null, "content_created_at": at, "content_modified_at": at,
        "created_by": user(), "modified_by": user(), "owned_by": user(), "shared_link": null,
        "parent": mini_folder_of(tree, &created.parent), "item_status": "active", "tags": [],
        "has_collaborations": false, "is_externally_owned": false});
    let Value::Object(mut item) = common else {
        unreachable!()
    };
    match &created.bytes {
        None => {
            item.insert("type".into(), json!("folder"));
            item.insert("size".into(), json!(0));
            item.insert("folder_upload_email".into(), Value::Null);
            item.insert("sync_state".into(), json!("not_synced"));
        }
        Some(bytes) => {
            let sha1 = &created.sha256()[..40];
            item.insert("type".into(), json!("file"));
            item.insert("sha1".into(), json!(sha1));
            item.insert(
                "file_version".into(),
                json!({"type": "file_version", "id": format!("{}000", created.id), "sha1": sha1}),
            );
            item.insert("size".into(), json!(bytes.len()));
            let extension = created.name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            item.insert("extension".into(), json!(extension));
            item.insert("lock".into(), Value::Null);
            item.insert("version_number".into(), json!("1"));
            item.insert("comment_count".into(), json!(0));
        }
    }
    Value::Object(item)
}

/// Whether folder `id` exists, generated or created.
fn folder_exists(tree: &FileTree, id: &str) -> bool {
    folder_index(tree, id).is_some() || tree.created(id).is_some_and(|c| c.is_folder())
}

/// What already holds `name` (any case) in folder `parent`, as its mini representation.
fn name_in_use(tree: &FileTree, parent: &str, name: &str) -> Option<Value> {
    let lower = name.to_lowercase();
    if let Some(f) = folder_index(tree, parent) {
        if let Some(sub) = tree
            .folders_in(f)
            .find(|s| format!("Folder {s}").to_lowercase() == lower)
        {
            return Some(mini_folder(sub));
        }
        if let Some(i) = tree
            .files_in(f)
            .find(|i| format!("file-{i:06}.bin").to_lowercase() == lower)
        {
            return Some(
                json!({"type": "file", "id": file_id(i), "name": format!("file-{i:06}.bin")}),
            );
        }
    }
    tree.created_in(parent)
        .find(|c| c.name.to_lowercase() == lower)
        .map(|c| {
            json!({"type": if c.is_folder() { "folder" } else { "file" }, "id": c.id, "name": c.name,
                   "sequence_id": "0", "etag": "0"})
        })
}

/// Box's checks of a new item's name and parent; `Err` with the answer.
fn check_new_item(tree: &FileTree, name: &str, parent: &str) -> Result<(), HttpResponse> {
    if name.is_empty()
        || name.chars().count() > 255
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.trim() != name
    {
        return Err(fail(400, "bad_request", "Bad Request"));
    }
    if !folder_exists(tree, parent) {
        return Err(fail(404, "not_found", "Not Found"));
    }
    if let Some(conflict) = name_in_use(tree, parent, name) {
        let mut body = error(
            409,
            "item_name_in_use",
            "Item with the same name already exists",
        );
        body["context_info"] = json!({"conflicts": conflict});
        return Err(HttpResponse::Conflict().json(body));
    }
    Ok(())
}

/// The parts of a `multipart/form-data` body: (field name, content), in order; `None` when it is not one or a
/// part has no name.
fn form_parts(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    crate::files::multipart_parts("multipart/form-data", content_type, body)?
        .into_iter()
        .map(|(headers, content)| {
            let name = headers
                .split("\r\n")
                .find(|h| h.to_ascii_lowercase().starts_with("content-disposition:"))?
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("name="))
                .next()?
                .trim_matches('"')
                .to_owned();
            Some((name, content))
        })
        .collect()
}

/// `POST /files/content` on the upload host.
fn upload(state: &mut State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let content_type = header(req, "Content-Type").unwrap_or_default();
    let Some(parts) = form_parts(content_type, body) else {
        return fail(400, "bad_request", "Bad Request");
    };
    let (Some(attributes), Some(file)) = (
        parts.iter().position(|(n, _)| n == "attributes"),
        parts.iter().position(|(n, _)| n == "file"),
    ) else {
        return fail(400, "bad_request", "Bad Request");
    };
    // "The `attributes` part of the body must come before the `file` part."
    if attributes > file {
        return fail(
            400,
            "metadata_after_file_contents",
            "The attributes part must come before the file part",
        );
    }
    let Ok(attributes) = serde_json::from_slice::<Value>(&parts[attributes].1) else {
        return fail(400, "bad_request", "Bad Request");
    };
    let name = attributes["name"].as_str().unwrap_or_default();
    let parent = attributes["parent"]["id"].as_str().unwrap_or_default();
    let tree = state.files.tree("box");
    if let Err(refused) = check_new_item(tree, name, parent) {
        return refused;
    }
    let created = crate::files::Created {
        id: created_id(tree.created.len()),
        name: name.to_owned(),
        parent: parent.to_owned(),
        bytes: Some(parts[file].1.clone()),
        mime_type: None,
    };
    tree.created.push(created.clone());
    HttpResponse::Created()
        .json(json!({"total_count": 1, "entries": [created_item(tree, &created)]}))
}

/// A chunked upload session open (`POST /files/upload_sessions`).
#[derive(Debug, Clone)]
pub(crate) struct UploadSession {
    folder_id: String,
    file_name: String,
    file_size: u64,
    part_size: u64,
    /// The parts uploaded, by offset: (part id, bytes).
    parts: std::collections::BTreeMap<u64, (String, Vec<u8>)>,
}

/// Box's part size when no test set one: 8 MiB.
const PART_SIZE: u64 = 8 * 1024 * 1024;

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    format!("{:x}", sha1::Sha1::digest(bytes))
}

/// Whether `Digest` is `sha=<base64 SHA-1 of bytes>`.
fn digest_matches(req: &HttpRequest, bytes: &[u8]) -> bool {
    use sha1::Digest;
    let expected = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(bytes));
    header(req, "Digest")
        .and_then(|d| d.trim().strip_prefix("sha="))
        .is_some_and(|d| d == expected)
}

/// `bytes <first>-<last>/<size>`.
fn content_range(req: &HttpRequest) -> Option<(u64, u64, u64)> {
    let range = header(req, "Content-Range")?
        .trim()
        .strip_prefix("bytes ")?;
    let (span, size) = range.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, size.parse().ok()?))
}

fn session_json(req: &HttpRequest, id: &str, session: &UploadSession) -> Value {
    let info = req.connection_info();
    let base = format!(
        "{}://{}/box/upload/api/2.0/files/upload_sessions/{id}",
        info.scheme(),
        info.host()
    );
    let total_parts = session.file_size.div_ceil(session.part_size);
    json!({"id": id, "type": "upload_session", "session_expires_at": iso_ms(EPOCH_MS + 7 * 86_400_000),
        "part_size": session.part_size, "total_parts": total_parts,
        "num_parts_processed": session.parts.len(),
        "session_endpoints": {"upload_part": base, "commit": format!("{base}/commit"), "abort": base,
            "list_parts": format!("{base}/parts"), "status": base, "log_event": format!("{base}/log")}})
}

/// The chunked upload API on the upload host (https://developer.box.com/guides/uploads/chunked/): `rest` is
/// what follows `/files/upload_sessions`.
fn upload_session(state: &mut State, req: &HttpRequest, rest: &str, body: &[u8]) -> HttpResponse {
    let files = &mut state.files;
    let method = req.method().clone();
    if rest.is_empty() {
        if method != Method::POST {
            return fail(405, "method_not_allowed", "Method Not Allowed");
        }
        let Ok(args) = serde_json::from_slice::<Value>(body) else {
            return fail(400, "bad_request", "Bad Request");
        };
        let (Some(name), Some(parent), Some(size)) = (
            args["file_name"].as_str(),
            args["folder_id"].as_str(),
            args["file_size"].as_u64().filter(|s| *s > 0),
        ) else {
            return fail(400, "bad_request", "Bad Request");
        };
        // Creating a session is also the preflight check.
        if let Err(refused) = check_new_item(files.tree("box"), name, parent) {
            return refused;
        }
        files.box_sessions_opened += 1;
        let id = format!(
            "{:032X}",
            0xF971_9647_45A5_CD0C_u128 + u128::from(files.box_sessions_opened)
        );
        let session = UploadSession {
            folder_id: parent.to_owned(),
            file_name: name.to_owned(),
            file_size: size,
            part_size: files.box_part_size.unwrap_or(PART_SIZE),
            parts: Default::default(),
        };
        let answer = session_json(req, &id, &session);
        files.box_sessions.insert(id, session);
        return HttpResponse::Created().json(answer);
    }
    let (id, commit) = match rest.strip_prefix('/').map(|r| r.split_once('/')) {
        Some(Some((id, "commit"))) => (id, true),
        Some(None) => (&rest[1..], false),
        _ => return not_found(),
    };
    let Some(session) = files.box_sessions.get_mut(id) else {
        return not_found();
    };
    match (method, commit) {
        (Method::DELETE, false) => {
            files.box_sessions.remove(id);
            HttpResponse::NoContent().finish()
        }
        (Method::GET, false) => HttpResponse::Ok().json(session_json(req, id, session)),
        (Method::PUT, false) => {
            if files.box_rejected_parts > 0 {
                files.box_rejected_parts -= 1;
                return fail(503, "unavailable", "Service Unavailable");
            }
            // "The lower bound of each part's byte range must be a multiple of the part size"; every part is
            // exactly the part size but the last.
            let Some((first, last, size)) = content_range(req) else {
                return fail(
                    416,
                    "requested_range_not_satisfiable",
                    "Requested Range Not Satisfiable",
                );
            };
            let length = body.len() as u64;
            if size != session.file_size
                || last < first
                || last >= size
                || first % session.part_size != 0
                || last - first + 1 != length
                || (length != session.part_size && last + 1 != size)
                || length > session.part_size
            {
                return fail(
                    416,
                    "requested_range_not_satisfiable",
                    "Requested Range Not Satisfiable",
                );
            }
            if !digest_matches(req, body) {
                return fail(412, "sha1_mismatch", "The digest does not match the part");
            }
            if let Some((part_id, bytes)) = session.parts.get(&first) {
                if bytes != body {
                    return fail(
                        409,
                        "range_overlaps_existing_part",
                        "The range overlaps a part already uploaded",
                    );
                }
                // The same part again (a retry): the same answer.
                return HttpResponse::Ok()
                    .json(json!({"part": {"part_id": part_id, "offset": first,
                    "size": length, "sha1": sha1_hex(body)}}));
            }
            let part_id = format!("{:08X}", 0x6F2D_3486_u64 + first / session.part_size);
            session
                .parts
                .insert(first, (part_id.clone(), body.to_vec()));
            HttpResponse::Ok().json(
                json!({"part": {"part_id": part_id, "offset": first, "size": length,
                "sha1": sha1_hex(body)}}),
            )
        }
        (Method::POST, true) => {
            if files.box_pending_commits > 0 {
                files.box_pending_commits -= 1;
                return HttpResponse::Accepted()
                    .insert_header(("Retry-After", "1"))
                    .finish();
            }
            let Ok(args) = serde_json::from_slice::<Value>(body) else {
                return fail(400, "bad_request", "Bad Request");
            };
            let Some(listed) = args["parts"].as_array() else {
                return fail(400, "bad_request", "Bad Request");
            };
            // The parts listed are the parts uploaded, in order, and they make the whole file.
            let expected: Vec<Value> = session
                .parts
                .iter()
                .map(|(offset, (part_id, bytes))| {
                    json!({"part_id": part_id, "offset": offset,
                    "size": bytes.len(), "sha1": sha1_hex(bytes)})
                })
                .collect();
            let bytes: Vec<u8> = session
                .parts
                .values()
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            if listed != &expected || bytes.len() as u64 != session.file_size {
                return fail(412, "precondition_failed", "The parts do not make the file");
            }
            if !digest_matches(req, &bytes) {
                return fail(412, "sha1_mismatch", "The digest does not match the file");
            }
            let (name, parent) = (session.file_name.clone(), session.folder_id.clone());
            let tree = files.tree("box");
            if let Err(refused) = check_new_item(tree, &name, &parent) {
                return refused;
            }
            let created = crate::files::Created {
                id: created_id(tree.created.len()),
                name,
                parent,
                bytes: Some(bytes),
                mime_type: None,
            };
            tree.created.push(created.clone());
            let answer = json!({"total_count": 1, "entries": [created_item(tree, &created)]});
            files.box_sessions.remove(id);
            HttpResponse::Created().json(answer)
        }
        _ => fail(405, "method_not_allowed", "Method Not Allowed"),
    }
}

/// The id of file `index`.
pub(crate) fn file_id(index: u64) -> String {
    (FILE_BASE + index).to_string()
}

fn folder_id(f: u64) -> String {
    if f == 0 {
        "0".to_owned()
    } else {
        (FOLDER_BASE + f).to_string()
    }
}

/// Box's error body.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Value {
    json!({"type": "error", "status": status, "code": code, "message": message,
        "help_url": "http://developers.box.com/docs/#errors", "request_id": "abcdef123456"})
}

fn fail(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(error(status, code, message))
}

fn not_found() -> HttpResponse {
    fail(404, "not_found", "Not Found")
}

fn user() -> Value {
    json!({"type": "user", "id": "11446498", "name": "Owner Box", "login": "owner@box.example"})
}

fn mini_folder(f: u64) -> Value {
    json!({"type": "folder", "id": folder_id(f), "sequence_id": if f == 0 { Value::Null } else { json!("1") },
        "etag": if f == 0 { Value::Null } else { json!("1") },
        "name": if f == 0 { "All Files".to_owned() } else { format!("Folder {f}") }})
}

fn path_collection(f: u64) -> Value {
    let mut chain = Vec::new();
    let mut at = f;
    loop {
        chain.push(mini_folder(at));
        if at == 0 {
            break;
        }
        at = FileTree::parent_of_folder(at);
    }
    chain.reverse();
    json!({"total_count": chain.len(), "entries": chain})
}

fn folder(f: u64) -> Value {
    let at = iso_ms(EPOCH_MS + f as i64 * 1000);
    json!({"type": "folder", "id": folder_id(f), "sequence_id": "1", "etag": "1",
        "name": format!("Folder {f}"), "description": "", "size": 0,
        "path_collection": path_collection(FileTree::parent_of_folder(f)), "created_at": at, "modified_at": at,
        "trashed_at": null, "content_created_at": at, "content_modified_at": at, "created_by": user(),
        "modified_by": user(), "owned_by": user(), "shared_link": null, "folder_upload_email": null,
        "parent": mini_folder(FileTree::parent_of_folder(f)), "item_status": "active", "tags": [],
        "has_collaborations": f % 2 == 1, "is_externally_owned": false, "sync_state": "not_synced"})
}

fn file(tree: &FileTree, i: u64) -> Value {
    let generation = tree.generation_of(i);
    let created = iso_ms(EPOCH_MS + i as i64 * 1000);
    let modified = iso_ms(EPOCH_MS + i as i64 * 1000 + i64::from(generation) * 86_400_000);
    let sha1 = tree.checksum(i, 40);
    let folder = tree.folder_of_file(i);
    json!({"type": "file", "id": file_id(i), "sequence_id": generation.to_string(),
        "etag": generation.to_string(), "name": format!("file-{i:06}.bin"), "sha1": sha1,
        "file_version": {"type": "file_version", "id": format!("{}{generation:03}", FILE_BASE + i), "sha1": sha1},
        "size": tree.size_of(i), "description": "", "path_collection": path_collection(folder),
        "created_at": created, "modified_at": modified, "trashed_at": null, "content_created_at": created,
        "content_modified_at": modified, "created_by": user(), "modified_by": user(), "owned_by": user(),
        "shared_link": null, "parent": mini_folder(folder), "item_status": "active", "extension": "bin",
        "tags": [], "lock": null, "has_collaborations": false, "is_externally_owned": false,
        "version_number": (generation + 1).to_string(), "comment_count": u64::from(i.is_multiple_of(3))})
}

fn web_link(folders: u64, w: u64) -> Value {
    let f = w % (folders + 1);
    let at = iso_ms(EPOCH_MS + w as i64 * 1000);
    json!({"type": "web_link", "id": (LINK_BASE + w).to_string(), "sequence_id": "0", "etag": "0",
        "name": format!("Link {w}"), "url": format!("https://example.com/{w}"), "description": "",
        "path_collection": path_collection(f), "created_at": at, "modified_at": at, "trashed_at": null,
        "created_by": user(), "modified_by": user(), "owned_by": user(), "shared_link": null,
        "parent": mini_folder(f), "item_status": "active"})
}

/// The mini representation plus the fields named in `fields` (all of them without `fields`).
fn select(query: &Query, item: Value) -> Value {
    let Some(fields) = param(query, "fields") else {
        return item;
    };
    let wanted: HashSet<&str> = fields
        .split(',')
        .map(str::trim)
        .chain(["type", "id", "etag", "sequence_id", "name"])
        .collect();
    match item {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(k, _)| wanted.contains(k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

fn page_limit(query: &Query, default: u64) -> Result<u64, HttpResponse> {
    match param(query, "limit").map(str::parse::<u64>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(HttpResponse::BadRequest().json(json!({"type": "error", "status": 400,
            "code": "bad_request", "message": "Bad Request", "context_info": {"errors": [{
                "reason": "invalid_parameter", "name": "limit", "message": "Invalid value for 'limit'."}]},
            "request_id": "abcdef123456"}))),
    }
}

fn marker(position: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("marker:{position}"))
}

fn read_marker(query: &Query) -> Result<u64, HttpResponse> {
    let Some(text) = param(query, "marker") else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.strip_prefix("marker:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| fail(400, "bad_request", "Invalid marker"))
}

/// A marker-paged page of `items`: `{"entries", "limit", "next_marker"}`.
fn marker_page(query: &Query, items: Vec<Value>, default_limit: u64) -> HttpResponse {
    let (limit, start) = match (page_limit(query, default_limit), read_marker(query)) {
        (Ok(l), Ok(s)) => (l, s as usize),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let end = (start + limit as usize).min(items.len());
    let entries = items.get(start.min(end)..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| marker(end as u64));
    HttpResponse::Ok().json(json!({"entries": entries, "limit": limit, "next_marker": next}))
}

/// An offset-paged page of `items`: `{"total_count", "entries", "offset", "limit"}`.
fn offset_page(query: &Query, items: Vec<Value>, default_limit: u64) -> HttpResponse {
    let limit = match page_limit(query, default_limit) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let offset = match param(query, "offset").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return fail(400, "bad_request", "Invalid value for 'offset'."),
    };
    let start = (offset as usize).min(items.len());
    let end = (start + limit as usize).min(items.len());
    HttpResponse::Ok().json(
        json!({"total_count": items.len(), "entries": items[start..end].to_vec(),
        "offset": offset, "limit": limit, "order": [{"by": "type", "direction": "ASC"}]}),
    )
}

fn file_index(tree: &FileTree, id: &str) -> Option<u64> {
    let n = id.parse::<u64>().ok()?;
    let i = n
        .checked_sub(FILE_BASE)
        .filter(|i| *i < FOLDER_BASE - FILE_BASE)?;
    tree.exists(i).then_some(i)
}

fn folder_index(tree: &FileTree, id: &str) -> Option<u64> {
    if id == "0" {
        return Some(0);
    }
    let f = id.parse::<u64>().ok()?.checked_sub(FOLDER_BASE)?;
    (f >= 1 && f <= tree.folders).then_some(f)
}

/// Whether `id` is a folder created through the API.
fn tree_has_created_folder(files: &mut FilesState, id: &str) -> bool {
    files.tree("box").created(id).is_some_and(|c| c.is_folder())
}

pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    accepted: &HashSet<String>,
) -> HttpResponse {
    if let Some(token) = rest.strip_prefix("/dl/") {
        return download_host(state, req, token);
    }
    if !bearer(req).is_some_and(|token| accepted.contains(token)) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"Service\", error=\"invalid_token\", error_description=\"The access token provided is invalid.\""))
            .finish();
    }
    if rest == "/upload/api/2.0/files/content" && req.method() == Method::POST {
        return upload(state, req, body);
    }
    if let Some(session) = rest.strip_prefix("/upload/api/2.0/files/upload_sessions") {
        return upload_session(state, req, session, body);
    }
    if rest == "/2.0/folders" && req.method() == Method::POST {
        let Ok(args) = serde_json::from_slice::<Value>(body) else {
            return fail(400, "bad_request", "Bad Request");
        };
        let name = args["name"].as_str().unwrap_or_default();
        let parent = args["parent"]["id"].as_str().unwrap_or_default();
        let tree = state.files.tree("box");
        if let Err(refused) = check_new_item(tree, name, parent) {
            return refused;
        }
        let created = crate::files::Created {
            id: created_id(tree.created.len()),
            name: name.to_owned(),
            parent: parent.to_owned(),
            bytes: None,
            mime_type: None,
        };
        tree.created.push(created.clone());
        return HttpResponse::Created().json(created_item(tree, &created));
    }
    if req.method() != Method::GET {
        return fail(405, "method_not_allowed", "Method Not Allowed");
    }
    let Some(path) = rest.strip_prefix("/2.0/") else {
        return not_found();
    };
    let segments: Vec<&str> = path.split('/').collect();
    let files = &mut state.files;
    match segments.as_slice() {
        ["users", "me"] => HttpResponse::Ok().json(user()),
        ["folders", id, "items"] if tree_has_created_folder(files, id) => {
            let tree = files.tree("box");
            let items: Vec<Value> = tree
                .created_in(id)
                .map(|c| select(query, created_item(tree, c)))
                .collect();
            if param(query, "usemarker") == Some("true") {
                marker_page(query, items, 100)
            } else {
                offset_page(query, items, 100)
            }
        }
        ["folders", id, "items"] => {
            let tree = files.tree("box");
            let Some(f) = folder_index(tree, id) else {
                return not_found();
            };
            let items: Vec<Value> = tree
                .folders_in(f)
                .map(folder)
                .chain(
                    (0..tree.web_links)
                        .filter(|w| w % (tree.folders + 1) == f)
                        .map(|w| web_link(tree.folders, w)),
                )
                .chain(tree.files_in(f).map(|i| file(tree, i)))
                .chain(tree.created_in(id).map(|c| created_item(tree, c)))
                .map(|item| select(query, item))
                .collect();
            if param(query, "usemarker") == Some("true") {
                marker_page(query, items, 100)
            } else {
                offset_page(query, items, 100)
            }
        }
        ["folders", id, "collaborations"] if tree_has_created_folder(files, id) => {
            marker_page(query, Vec::new(), 100)
        }
        ["folders", id, "collaborations"] => {
            let tree = files.tree("box");
            let Some(f) = folder_index(tree, id) else {
                return not_found();
            };
            let collaborations = if f % 2 == 1 {
                vec![json!({"type": "collaboration", "id": format!("7{f:010}"),
                    "item": mini_folder(f), "role": "editor", "status": "accepted",
                    "accessible_by": {"type": "user", "id": "22222", "name": "Collaborator", "login": "collab@example.com"},
                    "created_by": user(), "created_at": iso_ms(EPOCH_MS), "modified_at": iso_ms(EPOCH_MS)})]
            } else {
                Vec::new()
            };
            marker_page(query, collaborations, 100)
        }
        ["files", id, "content"] => {
            let FilesState {
                trees,
                box_not_ready,
                download_tokens,
                box_created_tokens: created_tokens,
                ..
            } = files;
            let tree = trees.entry("box".to_owned()).or_default();
            if tree.created(id).is_some_and(|c| !c.is_folder()) {
                let token = format!("{:016x}c{id}", rand::random::<u64>());
                created_tokens.insert(token.clone(), (*id).to_owned());
                let port = req.app_config().local_addr().port();
                return HttpResponse::Found()
                    .insert_header((
                        "Location",
                        format!("http://localhost:{port}/box/dl/{token}"),
                    ))
                    .finish();
            }
            let Some(i) = file_index(tree, id).filter(|i| !tree.vanished.contains(i)) else {
                return not_found();
            };
            if *box_not_ready > 0 {
                *box_not_ready -= 1;
                return HttpResponse::Accepted()
                    .insert_header(("Retry-After", "1"))
                    .finish();
            }
            let token = format!("{:016x}{i}", rand::random::<u64>());
            download_tokens.insert(token.clone(), i);
            let port = req.app_config().local_addr().port();
            HttpResponse::Found()
                .insert_header((
                    "Location",
                    format!("http://localhost:{port}/box/dl/{token}"),
                ))
                .finish()
        }
        ["files", id, "versions"] if files.tree("box").created(id).is_some() => {
            offset_page(query, Vec::new(), 1000)
        }
        ["files", id, "versions"] => {
            let tree = files.tree("box");
            let Some(i) = file_index(tree, id).filter(|i| !tree.vanished.contains(i)) else {
                return not_found();
            };
            let sha1 = tree.checksum(i, 40);
            let versions = (0..tree.generation_of(i))
                .rev()
                .map(|g| json!({"type": "file_version", "id": format!("{}{g:03}", FILE_BASE + i),
                    "sha1": format!("{g:02}{}", &sha1[2..]), "name": format!("file-{i:06}.bin"),
                    "size": tree.size_of(i), "created_at": iso_ms(EPOCH_MS + i64::from(g) * 86_400_000),
                    "modified_at": iso_ms(EPOCH_MS + i64::from(g) * 86_400_000), "modified_by": user(),
                    "trashed_at": null, "purged_at": null}))
                .collect();
            offset_page(query, versions, 1000)
        }
        ["files", id, "comments"] if files.tree("box").created(id).is_some() => {
            offset_page(query, Vec::new(), 1000)
        }
        ["files", id, "comments"] => {
            let tree = files.tree("box");
            let Some(i) = file_index(tree, id).filter(|i| !tree.vanished.contains(i)) else {
                return not_found();
            };
            let comments = if i % 3 == 0 {
                vec![
                    json!({"type": "comment", "id": format!("19{i:08}"), "is_reply_comment": false,
                    "message": "Looks good", "created_by": user(), "created_at": iso_ms(EPOCH_MS),
                    "modified_at": iso_ms(EPOCH_MS), "item": {"id": file_id(i), "type": "file"}}),
                ]
            } else {
                Vec::new()
            };
            offset_page(query, comments, 100)
        }
        ["files", id, "tasks"] if files.tree("box").created(id).is_some() => {
            HttpResponse::Ok().json(json!({"total_count": 0, "entries": []}))
        }
        ["files", id, "tasks"] => {
            let tree = files.tree("box");
            let Some(i) = file_index(tree, id).filter(|i| !tree.vanished.contains(i)) else {
                return not_found();
            };
            let tasks: Vec<Value> = if i % 4 == 0 {
                vec![
                    json!({"type": "task", "id": format!("11{i:08}"), "item": {"type": "file", "id": file_id(i)},
                    "due_at": iso_ms(EPOCH_MS + 86_400_000), "action": "review", "message": "Please review",
                    "is_completed": false, "created_by": user(), "created_at": iso_ms(EPOCH_MS),
                    "task_assignment_collection": {"total_count": 0, "entries": []}}),
                ]
            } else {
                Vec::new()
            };
            HttpResponse::Ok().json(json!({"total_count": tasks.len(), "entries": tasks}))
        }
        _ => not_found(),
    }
}

/// The download host: a pre-signed URL needs no credentials, and it is refused with one (a client that
/// sends the API token along would leak it to another host).
fn download_host(state: &mut State, req: &HttpRequest, token: &str) -> HttpResponse {
    let FilesState {
        trees,
        cut_next,
        authorized_downloads,
        download_tokens,
        box_created_tokens,
        ..
    } = &mut state.files;
    if header(req, "Authorization").is_some() {
        *authorized_downloads += 1;
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("a pre-signed download URL takes no Authorization header");
    }
    if !header(req, "Host").is_some_and(|host| host.starts_with("localhost:")) {
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("the download host is localhost");
    }
    let tree = trees.entry("box".to_owned()).or_default();
    if let Some(id) = box_created_tokens.get(token) {
        let bytes = tree
            .created(id)
            .and_then(|c| c.bytes.clone())
            .unwrap_or_default();
        return HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes);
    }
    let Some(i) = download_tokens.get(token).copied() else {
        return HttpResponse::NotFound()
            .content_type("text/plain")
            .body("Not Found");
    };
    tree.downloaded(i);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(tree.bytes_of(i, cut_next.remove("box")))
}

/// box in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "box",
    base_path: || "/box/2.0".to_owned(),
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
    rate_limited_body: || crate::files::rate_limited_body("box"),
    error_body: |status| {
        crate::files::error_body(
            "box",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
        )
    },
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};
