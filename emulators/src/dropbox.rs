//! Dropbox API v2, emulated from its HTTP documentation
//! (https://www.dropbox.com/developers/documentation/http/documentation: request formats, errors, and the
//! `files`, `sharing` and `file_requests` namespaces). Under `/dropbox` (the RPC host,
//! `api.dropboxapi.com`) and `/dropbox/content` (the content host, `content.dropboxapi.com`):
//!
//! - `Authorization: Bearer <access token>`; otherwise 401 `invalid_access_token`.
//! - RPC endpoints answer `POST` only, with `Content-Type: application/json` (another one is a 400 in plain
//!   text, as Dropbox answers malformed requests) and a JSON body (unparseable: a 400 in plain text).
//! - `files/list_folder` (`path` `""` is the root; `recursive`; `limit` 1–2000, default 2000;
//!   `include_non_downloadable_files`) and `files/list_folder/continue` (`cursor`): entries `.tag` `folder` or
//!   `file` (folders before what they hold), `cursor`, `has_more`. Files carry `id`, `rev`, `size`,
//!   `content_hash` and `is_downloadable` (a Paper doc: `false`).
//! - `files/download` on the content host: the argument in the `Dropbox-API-Arg` header (or the `arg` query
//!   parameter), `{"path": "id:…"}` or a path; the body must be empty and a `Content-Type`, if any, one of
//!   `text/plain` or `application/octet-stream` (a JSON one is a 400). The answer is the file's bytes with
//!   its metadata in `Dropbox-API-Result`. A missing file: 409 `path/not_found`; a folder `path/not_file`; a
//!   non-downloadable file `unsupported_file`.
//! - `files/list_revisions` (`path`, `mode`, `limit` 1–100): `{"is_deleted", "entries"}`, newest first.
//! - `sharing/list_folders` (`limit` 1–1000) + `/continue`: `entries` and a `cursor` only while there is more;
//!   `sharing/list_shared_links` (`cursor` in the same endpoint): `links`, `has_more`, `cursor`;
//!   `file_requests/list_v2` (`limit`) + `file_requests/list/continue`: `file_requests`, `has_more`, `cursor`.
//!   Their records are the data sets `shared_folders`, `shared_links`, `file_requests`.
//! - Writes (a restore's): `files/create_folder_v2` (`{"path", "autorename"}`; missing parents are created;
//!   a path in use is 409 `path/conflict/folder` unless `autorename`; answer `{"metadata": …}`) and
//!   `files/upload` on the content host (the bytes as an `application/octet-stream` body, the argument in
//!   `Dropbox-API-Arg`: `path`, `mode` `add` (the default; a path in use is 409 `path/conflict/file` unless
//!   `autorename`, which gives `name (1).ext`) or `overwrite`; at most 150 MiB, else 409 `payload_too_large`;
//!   answer: the file's metadata); larger files through `files/upload_session/start` (`{"session_id"}`),
//!   `append_v2` (`{"cursor": {"session_id", "offset"}}`; an offset other than the bytes received is 409
//!   `incorrect_offset` with `correct_offset`; an unknown session 409 `lookup_failed/not_found`, one already
//!   finished 409 `lookup_failed/closed`) and `finish` (`cursor` and `commit`, which is `files/upload`'s
//!   argument). What is created is listed and downloaded like the rest, its `content_hash` computed as Dropbox
//!   documents it (sha256 of the 4 MiB blocks' sha256s; generated files carry a derived stand-in, see
//!   `files.rs`).
//! - `files/get_metadata` (`path`: a path, or an `id:`; `include_deleted`): the item's metadata as listed
//!   (`.tag` `file` or `folder`; a deleted file with `include_deleted`: `.tag` `deleted`); nothing there 409
//!   `path/not_found`, a malformed path `path/malformed_path`; the root (`""`) is not a valid argument (400),
//!   as "metadata for the root folder is unsupported".
//! - Errors of an endpoint: 409 `{"error_summary": "<tag>/<tag>/..", "error": {".tag": …}}`; 429
//!   `too_many_requests` with `Retry-After`.

use std::collections::HashSet;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use crate::files::{FileTree, FilesState};
use crate::{bearer, header, param, Query, State, EPOCH_MS};

/// The id of file `index`.
pub(crate) fn file_id(index: u64) -> String {
    format!("id:dRoPbOxFiLe{index:012}")
}

fn folder_id(f: u64) -> String {
    format!("id:dRoPbOxFoLd{f:012}")
}

/// `2015-05-12T15:50:38Z`: Dropbox's timestamps have whole seconds.
fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The id of the `n`th item created through the API.
fn created_id(n: usize) -> String {
    format!("id:cReAtEd{n:012}")
}

/// Dropbox's content hash (https://www.dropbox.com/developers/reference/content-hash): the sha256 of the
/// concatenated sha256s of each 4 MiB block.
fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut whole = sha2::Sha256::new();
    for block in bytes.chunks(4 * 1024 * 1024) {
        whole.update(sha2::Sha256::digest(block));
    }
    whole
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The display path of folder `id` (`""` for the root), generated or created; `None` when there is none.
fn path_of_folder(tree: &FileTree, id: &str) -> Option<String> {
    if id.is_empty() {
        return Some(String::new());
    }
    if let Some(f) = id
        .strip_prefix("id:dRoPbOxFoLd")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return (1..=tree.folders).contains(&f).then(|| folder_path(f));
    }
    let created = tree.created(id).filter(|c| c.is_folder())?;
    Some(format!(
        "{}/{}",
        path_of_folder(tree, &created.parent)?,
        created.name
    ))
}

/// The display path of a created item.
fn path_of_created(tree: &FileTree, created: &crate::files::Created) -> String {
    format!(
        "{}/{}",
        path_of_folder(tree, &created.parent).unwrap_or_default(),
        created.name
    )
}

/// A created item's listing entry.
fn created_entry(tree: &FileTree, created: &crate::files::Created) -> Value {
    let path = path_of_created(tree, created);
    match &created.bytes {
        None => json!({".tag": "folder", "name": created.name, "path_lower": path.to_lowercase(),
            "path_display": path, "id": created.id}),
        Some(bytes) => {
            json!({".tag": "file", "name": created.name, "path_lower": path.to_lowercase(),
            "path_display": path, "id": created.id, "client_modified": time(EPOCH_MS),
            "server_modified": time(EPOCH_MS), "rev": format!("c{:09x}", created.id.len()),
            "size": bytes.len(), "is_downloadable": true, "content_hash": content_hash(bytes),
            "has_explicit_shared_members": false})
        }
    }
}

/// What holds `path` (any case), if anything: a generated folder (`Err(folder id)`), a generated file, or
/// a created item.
enum AtPath {
    Nothing,
    Folder(String),
    File,
}

fn at_path(tree: &FileTree, path: &str) -> AtPath {
    let lower = path.to_lowercase();
    if lower.is_empty() {
        return AtPath::Folder(String::new());
    }
    if let Some(f) = (1..=tree.folders).find(|f| folder_path(*f).to_lowercase() == lower) {
        return AtPath::Folder(folder_id(f));
    }
    if tree
        .listed()
        .any(|i| file_entry(tree, i)["path_lower"] == lower.as_str())
    {
        return AtPath::File;
    }
    match tree
        .created
        .iter()
        .find(|c| path_of_created(tree, c).to_lowercase() == lower)
    {
        Some(c) if c.is_folder() => AtPath::Folder(c.id.clone()),
        Some(_) => AtPath::File,
        None => AtPath::Nothing,
    }
}

/// A path argument checked as Dropbox checks it: absolute, no empty segment, no trailing slash.
fn valid_path(path: &str) -> bool {
    path.starts_with('/') && !path.ends_with('/') && !path.contains("//")
}

/// The folder `path` is, created with every missing folder above it; `Err` when a file is in the way.
fn ensure_folder(tree: &mut FileTree, path: &str) -> Result<String, ()> {
    match at_path(tree, path) {
        AtPath::Folder(id) => return Ok(id),
        AtPath::File => return Err(()),
        AtPath::Nothing => {}
    }
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = ensure_folder(tree, parent)?;
    let id = created_id(tree.created.len());
    tree.created.push(crate::files::Created {
        id: id.clone(),
        name: name.to_owned(),
        parent,
        bytes: None,
        mime_type: None,
    });
    Ok(id)
}

/// `path` itself when free, else (with `autorename`) the first `name (n)` free: Dropbox's renaming.
fn free_path(tree: &FileTree, path: &str, autorename: bool) -> Option<String> {
    if matches!(at_path(tree, path), AtPath::Nothing) {
        return Some(path.to_owned());
    }
    if !autorename {
        return None;
    }
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let (stem, ext) = match name.rfind('.') {
        Some(at) if at > 0 => (&name[..at], &name[at..]),
        _ => (name, ""),
    };
    (1..)
        .map(|n| format!("{parent}/{stem} ({n}){ext}"))
        .find(|candidate| matches!(at_path(tree, candidate), AtPath::Nothing))
}

fn folder_path(f: u64) -> String {
    if f == 0 {
        String::new()
    } else {
        format!("{}/Folder {f}", folder_path(FileTree::parent_of_folder(f)))
    }
}

fn folder_entry(f: u64) -> Value {
    let path = folder_path(f);
    json!({".tag": "folder", "name": format!("Folder {f}"), "path_lower": path.to_lowercase(),
        "path_display": path, "id": folder_id(f)})
}

fn file_entry(tree: &FileTree, i: u64) -> Value {
    let paper = tree.kinds.get(&i).is_some_and(|k| *k == "paper");
    let name = if paper {
        format!("file-{i:06}.paper")
    } else {
        format!("file-{i:06}.bin")
    };
    let path = format!("{}/{name}", folder_path(tree.folder_of_file(i)));
    let generation = i64::from(tree.generation_of(i));
    json!({".tag": "file", "name": name, "path_lower": path.to_lowercase(), "path_display": path,
        "id": file_id(i), "client_modified": time(EPOCH_MS + i as i64 * 1000),
        "server_modified": time(EPOCH_MS + i as i64 * 1000 + generation * 86_400_000),
        "rev": format!("{:x}{:09x}", generation + 1, i), "size": tree.size_of(i),
        "is_downloadable": !paper, "content_hash": tree.checksum(i, 64),
        "has_explicit_shared_members": false})
}

/// `files/get_metadata`'s answer for `path` (a path, any case, or an id): the item's entry as listed, a
/// deleted file's (with `include_deleted`), or `None`.
fn metadata_of(tree: &FileTree, path: &str, include_deleted: bool) -> Option<Value> {
    let lower = path.to_lowercase();
    if let Some(created) = tree
        .created
        .iter()
        .find(|c| c.id == path || path_of_created(tree, c).to_lowercase() == lower)
    {
        return Some(created_entry(tree, created));
    }
    if let Some(f) = (1..=tree.folders)
        .find(|f| folder_id(*f) == path || folder_path(*f).to_lowercase() == lower)
    {
        return Some(folder_entry(f));
    }
    let named = |i: u64| {
        let entry = file_entry(tree, i);
        (entry["id"] == path || entry["path_lower"] == lower.as_str()).then_some(entry)
    };
    if let Some(entry) = tree
        .listed()
        .filter(|i| !tree.vanished.contains(i))
        .find_map(named)
    {
        return Some(entry);
    }
    let deleted = tree
        .deleted
        .iter()
        .chain(&tree.vanished)
        .find_map(|i| named(*i))?;
    include_deleted.then(|| {
        json!({".tag": "deleted", "name": deleted["name"], "path_lower": deleted["path_lower"],
            "path_display": deleted["path_display"]})
    })
}

/// A text 400, as Dropbox answers a malformed request.
fn bad_request(function: &str, why: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "Error in call to API function \"{function}\": {why}"
        ))
}

/// An endpoint's error (409): `tags` from the outermost, e.g. `["path", "not_found"]`.
fn endpoint_error(tags: &[&str]) -> HttpResponse {
    let mut error = json!({});
    for tag in tags.iter().rev() {
        error = if error.as_object().is_some_and(|o| o.is_empty()) {
            json!({".tag": tag})
        } else {
            json!({".tag": tag, *tag: error})
        };
    }
    HttpResponse::Conflict()
        .json(json!({"error_summary": format!("{}/..", tags.join("/")), "error": error}))
}

/// A cursor for `kind` at `position` (`limit` a page), and back.
fn cursor(kind: &str, position: u64, limit: u64) -> String {
    format!(
        "AAH{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{kind}:{position}:{limit}"))
    )
}

fn read_cursor(kind: &str, text: &str) -> Option<(u64, u64)> {
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.strip_prefix("AAH")?)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let mut parts = decoded.split(':');
    (parts.next()? == kind).then_some(())?;
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The JSON body of an RPC call, checked as Dropbox checks it.
fn rpc_body(req: &HttpRequest, function: &str, body: &[u8]) -> Result<Value, HttpResponse> {
    let content_type = header(req, "Content-Type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media != "application/json" && content_type != "text/plain; charset=dropbox-cors-hack" {
        return Err(bad_request(function, &format!(
            "Bad HTTP \"Content-Type\" header: \"{content_type}\".  Expecting one of \"application/json\", \"application/json; charset=utf-8\", \"text/plain; charset=dropbox-cors-hack\"."
        )));
    }
    serde_json::from_slice(body)
        .map_err(|_| bad_request(function, "request body: could not decode input as JSON"))
}

/// `limit` in a body: `min`..=`max`, `default` when absent.
fn limit(body: &Value, function: &str, max: u64, default: u64) -> Result<u64, HttpResponse> {
    match body.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_request(
                function,
                &format!("request body: limit: {value} is not within the range [1, {max}]"),
            )),
        },
    }
}

/// Which listed file a `path` argument names: `id:…` or a path (case-insensitively).
fn file_named(tree: &FileTree, path: &str) -> Option<Result<u64, ()>> {
    if let Some(i) = path
        .strip_prefix("id:dRoPbOxFiLe")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return tree.exists(i).then_some(Ok(i));
    }
    if path.starts_with("id:dRoPbOxFoLd") {
        return Some(Err(()));
    }
    let lower = path.to_lowercase();
    if (1..=tree.folders).any(|f| folder_path(f).to_lowercase() == lower) {
        return Some(Err(()));
    }
    tree.listed()
        .find(|i| file_entry(tree, *i)["path_lower"] == lower.as_str())
        .map(Ok)
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
        return HttpResponse::Unauthorized().json(json!({
            "error_summary": "invalid_access_token/..", "error": {".tag": "invalid_access_token"}}));
    }
    if req.method() != Method::POST {
        return bad_request(rest.trim_start_matches("/2/"), "Expected POST");
    }
    if let Some(function) = rest.strip_prefix("/content/2/") {
        return match function {
            "files/download" => download(state, req, query, body),
            "files/upload" => upload(state, req, query, body),
            "files/upload_session/start"
            | "files/upload_session/append_v2"
            | "files/upload_session/finish" => upload_session(state, req, query, function, body),
            _ => HttpResponse::NotFound().body("Unknown API function"),
        };
    }
    let Some(function) = rest.strip_prefix("/2/") else {
        return HttpResponse::NotFound().body("Unknown API function");
    };
    if function == "users/get_current_account" {
        return HttpResponse::Ok().json(json!({
            "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", "email": "owner@dropbox.example",
            "name": {"display_name": "Owner Dropbox", "given_name": "Owner", "surname": "Dropbox"},
            "account_type": {".tag": "basic"}}));
    }
    let args = match rpc_body(req, function, body) {
        Ok(args) => args,
        Err(e) => return e,
    };
    let records = |state: &mut State, data_type: &str| state.dataset("dropbox", data_type).count;
    match function {
        "files/list_folder" | "files/list_folder/continue" => {
            let tree = state.files.tree("dropbox");
            let (position, size, recursive) = if function == "files/list_folder" {
                if args.get("path").and_then(Value::as_str) != Some("") {
                    return endpoint_error(&["path", "not_found"]);
                }
                let size = match limit(&args, function, 2000, 2000) {
                    Ok(n) => n,
                    Err(e) => return e,
                };
                let recursive = args
                    .get("recursive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                (0, size, recursive)
            } else {
                let cursor = args
                    .get("cursor")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some((recursive, (position, size))) = read_cursor("list_folder_r", cursor)
                    .map(|at| (true, at))
                    .or_else(|| read_cursor("list_folder", cursor).map(|at| (false, at)))
                else {
                    return bad_request(function, "request body: cursor: invalid cursor");
                };
                (position, size, recursive)
            };
            let non_downloadable = args
                .get("include_non_downloadable_files")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let entries: Vec<Value> = if recursive {
                (1..=tree.folders)
                    .map(folder_entry)
                    .chain(tree.listed().map(|i| file_entry(tree, i)))
                    .chain(tree.created.iter().map(|c| created_entry(tree, c)))
                    .collect()
            } else {
                tree.folders_in(0)
                    .map(folder_entry)
                    .chain(tree.files_in(0).map(|i| file_entry(tree, i)))
                    .chain(tree.created_in("").map(|c| created_entry(tree, c)))
                    .collect()
            };
            let entries: Vec<Value> = entries
                .into_iter()
                .filter(|e| non_downloadable || e["is_downloadable"] != false)
                .collect();
            let end = (position + size).min(entries.len() as u64);
            let page = entries[(position as usize).min(entries.len())..end as usize].to_vec();
            let kind = if recursive {
                "list_folder_r"
            } else {
                "list_folder"
            };
            HttpResponse::Ok().json(json!({"entries": page, "cursor": cursor(kind, end, size),
                "has_more": end < entries.len() as u64}))
        }
        "files/create_folder_v2" => {
            let Some(path) = args.get("path").and_then(Value::as_str) else {
                return bad_request(function, "request body: missing required field 'path'");
            };
            if !valid_path(path) {
                return endpoint_error(&["path", "malformed_path"]);
            }
            let autorename = args
                .get("autorename")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let tree = state.files.tree("dropbox");
            let Some(path) = free_path(tree, path, autorename) else {
                return endpoint_error(&["path", "conflict", "folder"]);
            };
            match ensure_folder(tree, &path) {
                Ok(id) => {
                    let created = tree.created(&id).cloned().expect("just created");
                    HttpResponse::Ok().json(json!({"metadata": created_entry(tree, &created)}))
                }
                Err(()) => endpoint_error(&["path", "conflict", "file"]),
            }
        }
        "files/get_metadata" => {
            let Some(path) = args.get("path").and_then(Value::as_str) else {
                return bad_request(function, "request body: missing required field 'path'");
            };
            if !(path.starts_with('/') || path.starts_with("id:") || path.starts_with("rev:")) {
                return bad_request(
                    function,
                    &format!("request body: path: '{path}' did not match pattern '(/(.|[\\r\\n])*|id:.*)|(rev:[0-9a-f]{{9,}})|(ns:[0-9]+(/.*)?)'"),
                );
            }
            if path.starts_with('/') && !valid_path(path) {
                return endpoint_error(&["path", "malformed_path"]);
            }
            let include_deleted = args
                .get("include_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let tree = state.files.tree("dropbox");
            match metadata_of(tree, path, include_deleted) {
                Some(entry) => HttpResponse::Ok().json(entry),
                None => endpoint_error(&["path", "not_found"]),
            }
        }
        "files/list_revisions" => {
            let size = match limit(&args, function, 100, 10) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let tree = state.files.tree("dropbox");
            let path = args.get("path").and_then(Value::as_str).unwrap_or_default();
            match file_named(tree, path) {
                None => endpoint_error(&["path", "not_found"]),
                Some(Err(())) => endpoint_error(&["path", "not_file"]),
                Some(Ok(i)) if tree.vanished.contains(&i) => endpoint_error(&["path", "not_found"]),
                Some(Ok(i)) => {
                    let generation = tree.generation_of(i);
                    let entries: Vec<Value> = (0..=generation)
                        .rev()
                        .take(size as usize)
                        .map(|g| {
                            let mut entry = file_entry(tree, i);
                            entry["rev"] = json!(format!("{:x}{:09x}", g + 1, i));
                            entry
                        })
                        .collect();
                    HttpResponse::Ok().json(json!({"is_deleted": false, "entries": entries}))
                }
            }
        }
        "sharing/list_folders" | "sharing/list_folders/continue" => {
            let count = records(state, "shared_folders");
            let (position, size) = if function == "sharing/list_folders" {
                match limit(&args, function, 1000, 1000) {
                    Ok(n) => (0, n),
                    Err(e) => return e,
                }
            } else {
                match args
                    .get("cursor")
                    .and_then(Value::as_str)
                    .and_then(|c| read_cursor("shared_folders", c))
                {
                    Some(at) => at,
                    None => return endpoint_error(&["invalid_cursor"]),
                }
            };
            let end = (position + size).min(count);
            let entries: Vec<Value> = (position..end)
                .map(|i| json!({"access_type": {".tag": "owner"}, "is_inside_team_folder": false,
                    "is_team_folder": false, "name": format!("Shared {i}"), "path_lower": format!("/shared {i}"),
                    "policy": {"acl_update_policy": {".tag": "editors"}, "shared_link_policy": {".tag": "anyone"},
                        "viewer_info_policy": {".tag": "enabled"}},
                    "preview_url": format!("https://www.dropbox.com/scl/fo/sf{i}"),
                    "shared_folder_id": format!("84528192{i:03}"), "time_invited": time(EPOCH_MS),
                    "access_inheritance": {".tag": "inherit"}}))
                .collect();
            let mut answer = json!({"entries": entries});
            // "Present if there are additional shared folders that have not been returned yet."
            if end < count {
                answer["cursor"] = json!(cursor("shared_folders", end, size));
            }
            HttpResponse::Ok().json(answer)
        }
        "sharing/list_shared_links" => {
            const PAGE: u64 = 100;
            let count = records(state, "shared_links");
            let position = match args.get("cursor").and_then(Value::as_str) {
                None => 0,
                Some(c) => match read_cursor("shared_links", c) {
                    Some((p, _)) => p,
                    None => return endpoint_error(&["reset"]),
                },
            };
            let end = (position + PAGE).min(count);
            let links: Vec<Value> = (position..end)
                .map(|i| json!({".tag": "file", "url": format!("https://www.dropbox.com/scl/fi/l{i:06}/file-{i:06}.bin?rlkey=k{i}&dl=0"),
                    "name": format!("file-{i:06}.bin"), "path_lower": format!("/file-{i:06}.bin"),
                    "id": file_id(i), "client_modified": time(EPOCH_MS), "server_modified": time(EPOCH_MS),
                    "rev": format!("1{i:09x}"), "size": 1024,
                    "link_permissions": {"can_revoke": true, "resolved_visibility": {".tag": "public"}}}))
                .collect();
            HttpResponse::Ok().json(json!({"links": links, "has_more": end < count,
                "cursor": cursor("shared_links", end, PAGE)}))
        }
        "file_requests/list_v2" | "file_requests/list/continue" => {
            let count = records(state, "file_requests");
            let (position, size) = if function == "file_requests/list_v2" {
                match limit(&args, function, 1000, 1000) {
                    Ok(n) => (0, n),
                    Err(e) => return e,
                }
            } else {
                match args
                    .get("cursor")
                    .and_then(Value::as_str)
                    .and_then(|c| read_cursor("file_requests", c))
                {
                    Some(at) => at,
                    None => return endpoint_error(&["invalid_cursor"]),
                }
            };
            let end = (position + size).min(count);
            let requests: Vec<Value> = (position..end)
                .map(|i| json!({"id": format!("oaCAVmEyrqYnkZX9955Y{i:06}"),
                    "url": format!("https://www.dropbox.com/request/oaCAVmEyrqYnkZX9955Y{i:06}"),
                    "title": format!("Request {i}"), "created": time(EPOCH_MS + i as i64 * 1000),
                    "is_open": true, "file_count": i % 5, "destination": format!("/File requests/Request {i}")}))
                .collect();
            HttpResponse::Ok().json(json!({"file_requests": requests,
                "cursor": cursor("file_requests", end, size), "has_more": end < count}))
        }
        _ => HttpResponse::NotFound().body("Unknown API function"),
    }
}

/// `files/download` on the content host.
fn download(state: &mut State, req: &HttpRequest, query: &Query, body: &[u8]) -> HttpResponse {
    const FUNCTION: &str = "files/download";
    if let Some(content_type) = header(req, "Content-Type").filter(|t| !t.is_empty()) {
        let allowed = [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/octet-stream",
            "application/octet-stream; charset=utf-8",
        ];
        if !allowed.contains(&content_type) {
            return bad_request(FUNCTION, &format!(
                "Bad HTTP \"Content-Type\" header: \"{content_type}\".  Expecting one of \"text/plain\", \"text/plain; charset=utf-8\", \"application/octet-stream\", \"application/octet-stream; charset=utf-8\"."
            ));
        }
    }
    if !body.is_empty() {
        return bad_request(FUNCTION, "the request body must be empty");
    }
    let Some(arg) = header(req, "Dropbox-API-Arg").or_else(|| param(query, "arg")) else {
        return bad_request(
            FUNCTION,
            "Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter \"arg\".",
        );
    };
    let Ok(arg) = serde_json::from_str::<Value>(arg) else {
        return bad_request(
            FUNCTION,
            "HTTP header \"Dropbox-API-Arg\": could not decode input as JSON",
        );
    };
    let Some(path) = arg.get("path").and_then(Value::as_str) else {
        return bad_request(
            FUNCTION,
            "HTTP header \"Dropbox-API-Arg\": missing required field 'path'",
        );
    };
    let FilesState {
        trees, cut_next, ..
    } = &mut state.files;
    let tree = trees.entry("dropbox".to_owned()).or_default();
    let created = tree
        .created
        .iter()
        .find(|c| {
            !c.is_folder()
                && (c.id == path || path_of_created(tree, c).to_lowercase() == path.to_lowercase())
        })
        .cloned();
    if let Some(created) = created {
        let result = crate::files::ascii_json(&created_entry(tree, &created));
        return HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("Dropbox-API-Result", result))
            .body(created.bytes.unwrap_or_default());
    }
    match file_named(tree, path) {
        None => endpoint_error(&["path", "not_found"]),
        Some(Err(())) => endpoint_error(&["path", "not_file"]),
        Some(Ok(i)) if tree.vanished.contains(&i) => endpoint_error(&["path", "not_found"]),
        Some(Ok(i)) if tree.kinds.get(&i).is_some_and(|k| *k == "paper") => {
            endpoint_error(&["unsupported_file"])
        }
        Some(Ok(i)) => {
            tree.downloaded(i);
            let result = crate::files::ascii_json(&file_entry(tree, i));
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header(("Dropbox-API-Result", result))
                .body(tree.bytes_of(i, cut_next.remove("dropbox")))
        }
    }
}

/// `files/upload` on the content host.
fn upload(state: &mut State, req: &HttpRequest, query: &Query, body: &[u8]) -> HttpResponse {
    const FUNCTION: &str = "files/upload";
    let arg = match upload_arg(req, query, FUNCTION) {
        Ok(arg) => arg,
        Err(refused) => return refused,
    };
    if body.len() as u64 > upload_limit(state) {
        return endpoint_error(&["payload_too_large"]);
    }
    let Some(path) = arg.get("path").and_then(Value::as_str).map(str::to_owned) else {
        return bad_request(
            FUNCTION,
            "HTTP header \"Dropbox-API-Arg\": missing required field 'path'",
        );
    };
    commit(state, FUNCTION, &path, &arg, body.to_vec())
}

/// The most bytes one upload request carries: 150 MiB, or a test's lower figure.
fn upload_limit(state: &State) -> u64 {
    state
        .files
        .dropbox_upload_limit
        .unwrap_or(150 * 1024 * 1024)
}

/// Checks an upload request's content type and reads its argument (the header or `arg`).
fn upload_arg(req: &HttpRequest, query: &Query, function: &str) -> Result<Value, HttpResponse> {
    let content_type = header(req, "Content-Type").unwrap_or_default();
    if ![
        "application/octet-stream",
        "text/plain; charset=dropbox-cors-hack",
    ]
    .contains(&content_type)
    {
        return Err(bad_request(function, &format!(
            "Bad HTTP \"Content-Type\" header: \"{content_type}\".  Expecting one of \"application/octet-stream\", \"text/plain; charset=dropbox-cors-hack\"."
        )));
    }
    let Some(arg) = header(req, "Dropbox-API-Arg").or_else(|| param(query, "arg")) else {
        return Err(bad_request(
            function,
            "Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter \"arg\".",
        ));
    };
    serde_json::from_str::<Value>(arg).map_err(|_| {
        bad_request(
            function,
            "HTTP header \"Dropbox-API-Arg\": could not decode input as JSON",
        )
    })
}

/// `files/upload_session/start`, `append_v2` and `finish`.
fn upload_session(
    state: &mut State,
    req: &HttpRequest,
    query: &Query,
    function: &str,
    body: &[u8],
) -> HttpResponse {
    let arg = match upload_arg(req, query, function) {
        Ok(arg) => arg,
        Err(refused) => return refused,
    };
    if body.len() as u64 > upload_limit(state) {
        return endpoint_error(&["payload_too_large"]);
    }
    if function == "files/upload_session/start" {
        let id = format!("AAAAAAAAA{:016x}", rand::random::<u64>());
        state
            .files
            .dropbox_sessions
            .insert(id.clone(), body.to_vec());
        return HttpResponse::Ok().json(json!({"session_id": id}));
    }
    let cursor = &arg["cursor"];
    let (Some(id), Some(offset)) = (cursor["session_id"].as_str(), cursor["offset"].as_u64())
    else {
        return bad_request(
            function,
            "HTTP header \"Dropbox-API-Arg\": missing required field 'cursor'",
        );
    };
    if state.files.dropbox_closed_sessions.contains(id) {
        return endpoint_error(&["lookup_failed", "closed"]);
    }
    let Some(received) = state.files.dropbox_sessions.get_mut(id) else {
        return endpoint_error(&["lookup_failed", "not_found"]);
    };
    if offset != received.len() as u64 {
        let correct = received.len();
        return HttpResponse::Conflict().json(json!({
            "error_summary": "lookup_failed/incorrect_offset/..",
            "error": {".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset",
                "correct_offset": correct}}}));
    }
    received.extend_from_slice(body);
    if function == "files/upload_session/append_v2" {
        return HttpResponse::Ok().json(Value::Null);
    }
    let id = id.to_owned();
    let bytes = state.files.dropbox_sessions.remove(&id).unwrap_or_default();
    let commit_arg = arg["commit"].clone();
    let Some(path) = commit_arg
        .get("path")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return bad_request(
            function,
            "HTTP header \"Dropbox-API-Arg\": commit: missing required field 'path'",
        );
    };
    let committed = commit(state, function, &path, &commit_arg, bytes);
    if committed.status().is_success() {
        state.files.dropbox_closed_sessions.insert(id);
    }
    committed
}

/// Stores an uploaded file at `path` as `arg` says (`mode` `add` or `overwrite`, `autorename`):
/// `files/upload` and an upload session's `finish`.
fn commit(
    state: &mut State,
    function: &str,
    path: &str,
    arg: &Value,
    bytes: Vec<u8>,
) -> HttpResponse {
    if !valid_path(path) {
        return endpoint_error(&["path", "malformed_path"]);
    }
    let mode = match arg.get("mode") {
        None => "add",
        Some(Value::String(mode)) => mode.as_str(),
        Some(mode) => mode.get(".tag").and_then(Value::as_str).unwrap_or_default(),
    };
    if !["add", "overwrite"].contains(&mode) {
        return bad_request(
            function,
            &format!("HTTP header \"Dropbox-API-Arg\": mode: unknown tag '{mode}'"),
        );
    }
    let autorename = arg
        .get("autorename")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tree = state.files.tree("dropbox");
    let existing = tree.created.iter().position(|c| {
        !c.is_folder() && path_of_created(tree, c).to_lowercase() == path.to_lowercase()
    });
    let path = match (mode, existing) {
        ("overwrite", Some(at)) => {
            tree.created[at].bytes = Some(bytes);
            let created = tree.created[at].clone();
            return HttpResponse::Ok().json(created_entry(tree, &created));
        }
        _ => match free_path(tree, path, autorename) {
            Some(path) => path,
            None => return endpoint_error(&["path", "conflict", "file"]),
        },
    };
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let name = name.to_owned();
    let Ok(parent) = ensure_folder(tree, parent) else {
        return endpoint_error(&["path", "conflict", "folder"]);
    };
    let created = crate::files::Created {
        id: created_id(tree.created.len()),
        name,
        parent,
        bytes: Some(bytes),
        mime_type: None,
    };
    tree.created.push(created.clone());
    HttpResponse::Ok().json(created_entry(tree, &created))
}

/// dropbox in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "dropbox",
    base_path: || "/dropbox".to_owned(),
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
    rate_limited_body: || crate::files::rate_limited_body("dropbox"),
    error_body: |status| {
        crate::files::error_body(
            "dropbox",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
        )
    },
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};
