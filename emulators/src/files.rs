//! What the three file platforms (Google Drive, Dropbox, Box: `google.rs`, `dropbox.rs`, `box_.rs`) share: a
//! tree of folders and files computed from a few numbers, and files' bytes generated as they are sent.
//!
//! A tree is `folders` folders and `files` files: folder `f` (1-based) lives in folder `f / 2` (`0` is the
//! root, so the tree is a binary tree under folder 1), file `i` (0-based) in folder `i % (folders + 1)`. A
//! file's bytes are a pseudo-random stream computed from its index and its generation (bumped by
//! [`PlatformApi::change_file`]), so a 2 GiB file costs nothing until it is read and is read in flat memory;
//! its version (Drive's `md5Checksum`, Dropbox's `content_hash`, Box's `sha1`) is derived from the same two
//! numbers (not a real digest of the bytes: the connectors compare versions, they never recompute them).
//! Each platform's module turns the tree into its own records, paths and errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use serde_json::{json, Value};

use crate::PlatformApi;

/// How a file platform's data is laid out and what it has been asked to do.
#[derive(Debug, Default, Clone)]
pub(crate) struct FileTree {
    pub folders: u64,
    pub files: u64,
    /// The size of every file's bytes, unless `sizes` says otherwise.
    pub size: u64,
    pub sizes: BTreeMap<u64, u64>,
    /// Files whose bytes changed, and how many times.
    pub generations: BTreeMap<u64, u32>,
    /// Files deleted: in no listing, their bytes gone.
    pub deleted: BTreeSet<u64>,
    /// Files still listed whose bytes are gone: deleted between a listing and a download.
    pub vanished: BTreeSet<u64>,
    /// Files in the bin (Drive): listed only without `trashed = false`.
    pub trashed: BTreeSet<u64>,
    /// Files of another type than a plain blob (Drive's `application/vnd.google-apps.document`, …).
    pub kinds: BTreeMap<u64, &'static str>,
    /// Box web links, link `w` in folder `w % (folders + 1)`.
    pub web_links: u64,
    /// Successful content answers, per file.
    pub downloads: BTreeMap<u64, u32>,
    /// Folders and files created through the API (a restore's uploads), in the order created.
    pub created: Vec<Created>,
}

/// A folder or a file created through the API, kept with its bytes so that listings show it and downloads
/// send it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its id as the platform shows it.
    pub id: String,
    pub name: String,
    /// The id of the folder it is in (the platform's root: Dropbox `""`, Box `"0"`, Drive the root's id).
    pub parent: String,
    /// `None` for a folder.
    pub bytes: Option<Vec<u8>>,
    /// The media type it was uploaded with (Drive).
    pub mime_type: Option<String>,
}

impl Created {
    pub fn is_folder(&self) -> bool {
        self.bytes.is_none()
    }

    /// Hex sha256 of its bytes (of nothing for a folder): what an emulation derives its version from.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.bytes.as_deref().unwrap_or_default())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The file platforms' state, kept in the emulation's shared state.
#[derive(Debug, Default)]
pub(crate) struct FilesState {
    pub trees: HashMap<String, FileTree>,
    /// Google: the next `n` requests answer 403 `userRateLimitExceeded`.
    pub google_rate_limited: usize,
    /// Box: the next `n` content requests answer 202 with `Retry-After` (the file is not ready yet).
    pub box_not_ready: usize,
    /// The next content answer of the platform is cut off after this many bytes.
    pub cut_next: HashMap<String, u64>,
    /// Box download host: requests that carried an `Authorization` header (refused).
    pub authorized_downloads: usize,
    /// Box download host: pre-signed tokens handed out → file index.
    pub download_tokens: HashMap<String, u64>,
    /// Box download host: pre-signed tokens handed out → created file id.
    pub box_created_tokens: HashMap<String, String>,
    /// Drive: resumable upload sessions, by `upload_id`.
    pub google_sessions: HashMap<String, crate::google::ResumableSession>,
    /// Drive: the next `PUT` to a resumable upload session keeps only this many of its bytes, and its
    /// answer is lost (the connection closes).
    pub google_cut_next_put: Option<u64>,
    /// Drive: the next status query of a resumable upload session finds it expired (404).
    pub google_expire_next_query: bool,
    /// Drive: the bytes `PUT`s to resumable upload sessions carried (those that arrived).
    pub google_bytes_received: u64,
    /// Dropbox: upload sessions open, by id: the bytes so far.
    pub dropbox_sessions: HashMap<String, Vec<u8>>,
    /// Dropbox: upload sessions finished (committed): a request naming one is 409 `lookup_failed/closed`.
    pub dropbox_closed_sessions: std::collections::HashSet<String>,
    /// Dropbox: `files/upload`'s limit when lowered for a test (documented: 150 MiB).
    pub dropbox_upload_limit: Option<u64>,
    /// Box: chunked upload sessions open, by id.
    pub box_sessions: HashMap<String, crate::box_::UploadSession>,
    /// Box: sessions opened so far (their ids count).
    pub box_sessions_opened: u64,
    /// Box: the part size new sessions name, when set for a test (otherwise 8 MiB).
    pub box_part_size: Option<u64>,
    /// Box: the next `n` parts answer 503 (and are not kept).
    pub box_rejected_parts: usize,
    /// Box: the next `n` commits answer 202 with `Retry-After: 1`.
    pub box_pending_commits: usize,
}

impl FilesState {
    pub fn tree(&mut self, platform: &str) -> &mut FileTree {
        self.trees.entry(platform.to_owned()).or_default()
    }
}

impl FileTree {
    /// The folder holding folder `f` (1-based); 0 is the root.
    pub fn parent_of_folder(f: u64) -> u64 {
        f / 2
    }

    pub fn folder_of_file(&self, index: u64) -> u64 {
        index % (self.folders + 1)
    }

    pub fn size_of(&self, index: u64) -> u64 {
        self.sizes.get(&index).copied().unwrap_or(self.size)
    }

    pub fn generation_of(&self, index: u64) -> u32 {
        self.generations.get(&index).copied().unwrap_or(0)
    }

    pub fn exists(&self, index: u64) -> bool {
        index < self.files && !self.deleted.contains(&index)
    }

    /// The files that are listed, in index order.
    pub fn listed(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.files).filter(|i| !self.deleted.contains(i))
    }

    /// Files of folder `f` that are listed, in index order.
    pub fn files_in(&self, f: u64) -> impl Iterator<Item = u64> + '_ {
        (f..self.files)
            .step_by((self.folders + 1) as usize)
            .filter(|i| !self.deleted.contains(i))
    }

    /// Folders directly in folder `f`.
    pub fn folders_in(&self, f: u64) -> impl Iterator<Item = u64> + '_ {
        let children = if f == 0 { 1..2 } else { 2 * f..2 * f + 2 };
        children.filter(move |c| *c >= 1 && *c <= self.folders)
    }

    /// The seed of file `index`'s bytes at its current generation.
    pub fn seed(&self, index: u64) -> u64 {
        mix(index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (u64::from(self.generation_of(index)) << 40))
    }

    /// A hex string of `len` digits that changes with the file's bytes (its emulated checksum).
    pub fn checksum(&self, index: u64, len: usize) -> String {
        let seed = self.seed(index);
        let mut out = String::with_capacity(len + 16);
        let mut n = 0u64;
        while out.len() < len {
            out.push_str(&format!("{:016x}", mix(seed ^ n)));
            n += 1;
        }
        out.truncate(len);
        out
    }

    /// The created item `id`.
    pub fn created(&self, id: &str) -> Option<&Created> {
        self.created.iter().find(|c| c.id == id)
    }

    /// The created items directly in folder `parent`.
    pub fn created_in<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Created> + 'a {
        self.created.iter().filter(move |c| c.parent == parent)
    }

    /// Counts a successful content answer.
    pub fn downloaded(&mut self, index: u64) {
        *self.downloads.entry(index).or_default() += 1;
    }

    /// The answer carrying file `index`'s bytes, cut off after `cut` bytes if asked.
    pub fn bytes_of(&self, index: u64, cut: Option<u64>) -> Generated {
        Generated {
            seed: self.seed(index),
            size: self.size_of(index),
            sent: 0,
            cut_at: cut,
        }
    }
}

/// SplitMix64's output function: a good 64-bit mix of its input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A file's bytes, generated 64 KiB at a time as the answer is sent: byte `o` is byte `o % 8` of
/// `mix(seed ^ (o / 8))`. With `cut_at`, the body fails after that many bytes: the connection is closed
/// mid-body, as a dropped download is.
pub(crate) struct Generated {
    seed: u64,
    size: u64,
    sent: u64,
    cut_at: Option<u64>,
}

const CHUNK: u64 = 64 * 1024;

impl Generated {
    fn fill(&self, from: u64, len: usize) -> Vec<u8> {
        let skip = (from % 8) as usize;
        let words = (skip + len).div_ceil(8) as u64;
        let mut out = Vec::with_capacity(words as usize * 8);
        for word in from / 8..from / 8 + words {
            out.extend_from_slice(&mix(self.seed ^ word).to_le_bytes());
        }
        out.drain(..skip);
        out.truncate(len);
        out
    }
}

impl MessageBody for Generated {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.size)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let end = self.cut_at.unwrap_or(self.size).min(self.size);
        if self.sent >= end {
            if self.sent < self.size {
                return Poll::Ready(Some(Err(std::io::Error::other(
                    "the download was cut off (emulated)",
                ))));
            }
            return Poll::Ready(None);
        }
        let len = CHUNK.min(end - self.sent);
        let chunk = self.fill(self.sent, len as usize);
        self.sent += len;
        Poll::Ready(Some(Ok(Bytes::from(chunk))))
    }
}

/// Which fields of a JSON answer a Google partial response keeps (`fields=nextPageToken,files(id,name)`,
/// https://developers.google.com/drive/api/guides/fields-parameter).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selection {
    All,
    Fields(BTreeMap<String, Selection>),
}

impl Selection {
    /// Parses a `fields` value; `Err` for unbalanced parentheses or an empty name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (selection, rest) = Self::parse_list(text.trim())?;
        if !rest.trim().is_empty() {
            return Err(format!("unexpected `{rest}`"));
        }
        Ok(selection)
    }

    fn parse_list(mut text: &str) -> Result<(Self, &str), String> {
        let mut fields = BTreeMap::new();
        loop {
            text = text.trim_start();
            let end = text.find([',', '(', ')']).unwrap_or(text.len());
            let name = text[..end].trim();
            if name.is_empty() {
                return Err("an empty field name".into());
            }
            text = &text[end..];
            let selection = if let Some(inner) = text.strip_prefix('(') {
                let (inner, rest) = Self::parse_list(inner)?;
                text = rest
                    .strip_prefix(')')
                    .ok_or_else(|| "an unclosed parenthesis".to_owned())?;
                inner
            } else {
                Selection::All
            };
            if name == "*" {
                return Ok((Selection::All, text.trim_start_matches(',')));
            }
            fields.insert(name.to_owned(), selection);
            match text.strip_prefix(',') {
                Some(rest) => text = rest,
                None => return Ok((Selection::Fields(fields), text)),
            }
        }
    }

    /// `value` with only the selected fields (arrays: each element).
    pub fn apply(&self, value: Value) -> Value {
        match (self, value) {
            (Selection::All, value) => value,
            (selection, Value::Array(items)) => {
                Value::Array(items.into_iter().map(|v| selection.apply(v)).collect())
            }
            (Selection::Fields(fields), Value::Object(mut object)) => {
                let mut kept = serde_json::Map::new();
                for (name, selection) in fields {
                    if let Some(value) = object.remove(name) {
                        kept.insert(name.clone(), selection.apply(value));
                    }
                }
                Value::Object(kept)
            }
            (_, value) => value,
        }
    }
}

/// JSON text with every non-ASCII character escaped, as an HTTP header carries it (Dropbox's
/// `Dropbox-API-Result`).
pub(crate) fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The error body a file platform answers a status with (for `fail_next` and friends).
pub(crate) fn error_body(platform: &str, status: u16, message: &str) -> Value {
    match platform {
        "google" => crate::google::error(status, "backendError", message),
        "dropbox" => {
            json!({"error_summary": format!("{}/..", message.to_lowercase().replace(' ', "_")),
            "error": {".tag": "other"}})
        }
        _ => crate::box_::error(status, "error", message),
    }
}

/// Each platform's 429 body.
pub(crate) fn rate_limited_body(platform: &str) -> Value {
    match platform {
        "google" => crate::google::error(429, "rateLimitExceeded", "Rate Limit Exceeded"),
        "dropbox" => json!({"error_summary": "too_many_requests/..",
            "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 1}}),
        _ => crate::box_::error(
            429,
            "rate_limit_exceeded",
            "Request rate limit exceeded, please try again later",
        ),
    }
}

/// The file platforms' side of the emulation, for tests and benchmarks.
impl PlatformApi {
    /// Replaces `platform`'s files (`google`, `dropbox`, `box`) with `files` files of `size` bytes each in
    /// `folders` folders (see the module's layout).
    pub fn seed_files(&self, platform: &str, folders: u64, files: u64, size: u64) {
        self.files().trees.insert(
            platform.to_owned(),
            FileTree {
                folders,
                files,
                size,
                ..FileTree::default()
            },
        );
    }

    /// Gives file `index` another size.
    pub fn set_file_size(&self, platform: &str, index: u64, size: u64) {
        self.files().tree(platform).sizes.insert(index, size);
    }

    /// Changes file `index`'s bytes (and so its version).
    pub fn change_file(&self, platform: &str, index: u64) {
        *self
            .files()
            .tree(platform)
            .generations
            .entry(index)
            .or_default() += 1;
    }

    /// Deletes file `index`: no longer listed, its bytes gone.
    pub fn delete_file(&self, platform: &str, index: u64) {
        self.files().tree(platform).deleted.insert(index);
    }

    /// Deletes file `index`'s bytes but leaves it in the listings, as a file deleted between a listing and
    /// its download looks to the backup.
    pub fn vanish_file(&self, platform: &str, index: u64) {
        self.files().tree(platform).vanished.insert(index);
    }

    /// Moves file `index` to Drive's bin.
    pub fn trash_file(&self, platform: &str, index: u64) {
        self.files().tree(platform).trashed.insert(index);
    }

    /// Makes file `index` a file of this Drive type (`application/vnd.google-apps.document`, …).
    pub fn set_file_kind(&self, platform: &str, index: u64, mime_type: &'static str) {
        self.files().tree(platform).kinds.insert(index, mime_type);
    }

    /// Box: `n` web links spread over the folders.
    pub fn seed_web_links(&self, n: u64) {
        self.files().tree("box").web_links = n;
    }

    /// The bytes of file `index` as its content endpoint sends them.
    pub fn file_bytes(&self, platform: &str, index: u64) -> Vec<u8> {
        let mut files = self.files();
        let tree = files.tree(platform);
        let body = tree.bytes_of(index, None);
        body.fill(0, tree.size_of(index) as usize)
    }

    /// The id file `index` has on `platform`.
    pub fn file_id(&self, platform: &str, index: u64) -> String {
        match platform {
            "google" => crate::google::file_id(index),
            "dropbox" => crate::dropbox::file_id(index),
            _ => crate::box_::file_id(index),
        }
    }

    /// Successful downloads of file `index` so far.
    pub fn downloads_of(&self, platform: &str, index: u64) -> u32 {
        self.files()
            .tree(platform)
            .downloads
            .get(&index)
            .copied()
            .unwrap_or(0)
    }

    /// Successful downloads of every file of `platform` so far.
    pub fn downloads(&self, platform: &str) -> u64 {
        self.files()
            .tree(platform)
            .downloads
            .values()
            .map(|n| u64::from(*n))
            .sum()
    }

    /// The folders and files created through `platform`'s API (a restore's), in the order created.
    pub fn created_items(&self, platform: &str) -> Vec<Created> {
        self.files().tree(platform).created.clone()
    }

    /// Dropbox: the most bytes one `files/upload` takes (150 MiB, as documented, unless lowered here).
    pub fn set_dropbox_upload_limit(&self, bytes: u64) {
        self.files().dropbox_upload_limit = Some(bytes);
    }

    /// Box: the part size of the chunked upload sessions opened from now on (8 MiB unless set here).
    pub fn set_box_part_size(&self, bytes: u64) {
        self.files().box_part_size = Some(bytes);
    }

    /// Box: the next `n` parts uploaded to a session answer 503 (not kept), as a part the platform failed
    /// to take.
    pub fn box_reject_parts_next(&self, n: usize) {
        self.files().box_rejected_parts = n;
    }

    /// Box: the next `n` commits of an upload session answer `202 Accepted` with `Retry-After: 1`, as while
    /// the parts are still being processed.
    pub fn box_commit_pending_next(&self, n: usize) {
        self.files().box_pending_commits = n;
    }

    /// Box: chunked upload sessions opened and neither committed nor aborted.
    pub fn box_open_sessions(&self) -> usize {
        self.files().box_sessions.len()
    }

    /// The next content answer of `platform` is cut off after `bytes` bytes.
    pub fn cut_next_download(&self, platform: &str, bytes: u64) {
        self.files().cut_next.insert(platform.to_owned(), bytes);
    }

    /// Drive: the next `PUT` of bytes to a resumable upload session breaks after `bytes` bytes: Drive keeps
    /// those, and the connection closes before an answer.
    pub fn google_cut_next_upload(&self, bytes: u64) {
        self.files().google_cut_next_put = Some(bytes);
    }

    /// Drive: the next status query of a resumable upload session (`Content-Range: bytes */<size>`) finds
    /// the session expired: 404, and the session is gone.
    pub fn google_expire_next_status_query(&self) {
        self.files().google_expire_next_query = true;
    }

    /// Drive: the bytes that arrived in `PUT`s to resumable upload sessions so far.
    pub fn google_upload_bytes_received(&self) -> u64 {
        self.files().google_bytes_received
    }

    /// Google: the next `n` requests answer 403 `userRateLimitExceeded`, Drive's "slow down".
    pub fn google_rate_limit_next(&self, n: usize) {
        self.files().google_rate_limited = n;
    }

    /// Box: the next `n` content requests answer 202 with `Retry-After: 1` (the file is not ready yet).
    pub fn box_not_ready_next(&self, n: usize) {
        self.files().box_not_ready = n;
    }

    /// Box: requests to the download host that carried an `Authorization` header (each refused).
    pub fn box_authorized_downloads(&self) -> usize {
        self.files().authorized_downloads
    }

    /// The base URL of a platform's content host (Dropbox's, for `LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL`).
    pub fn content_url(&self, platform: &str) -> String {
        match platform {
            "dropbox" => format!("{}/dropbox/content", self.base_url),
            other => panic!("{other} has no separate content host"),
        }
    }

    fn files(&self) -> FilesGuard<'_> {
        FilesGuard(self.state())
    }
}

/// The file platforms' part of the locked state.
struct FilesGuard<'a>(std::sync::MutexGuard<'a, crate::State>);

impl std::ops::Deref for FilesGuard<'_> {
    type Target = FilesState;
    fn deref(&self) -> &FilesState {
        &self.0.files
    }
}

impl std::ops::DerefMut for FilesGuard<'_> {
    fn deref_mut(&mut self) -> &mut FilesState {
        &mut self.0.files
    }
}

/// The parts of a multipart body of media type `media` (`multipart/related` for Google Drive's multipart
/// upload, `multipart/form-data` for Box's), each (its headers, its content), with the boundary its
/// `content_type` names (RFC 2046 §5.1.1); `None` when it is not one.
pub(crate) fn multipart_parts(
    media: &str,
    content_type: &str,
    body: &[u8],
) -> Option<Vec<(String, Vec<u8>)>> {
    let (given, params) = content_type.split_once(';')?;
    if !given.trim().eq_ignore_ascii_case(media) {
        return None;
    }
    let boundary = params
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let find = |from: usize, needle: &[u8]| {
        body[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|at| at + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, delimiter.as_bytes())? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Some(parts);
        }
        at += 2;
        let headers_end = find(at, b"\r\n\r\n")?;
        let headers = String::from_utf8(body[at..headers_end].to_vec()).ok()?;
        let content_start = headers_end + 4;
        let next = find(content_start, format!("\r\n{delimiter}").as_bytes())?;
        parts.push((headers, body[content_start..next].to_vec()));
        at = next + 2 + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_select_what_google_returns() {
        let selection = Selection::parse("nextPageToken,files(id,name),kind").unwrap();
        let answer = json!({"kind": "drive#fileList", "nextPageToken": "t", "incompleteSearch": false,
            "files": [{"id": "a", "name": "n", "size": "1"}]});
        assert_eq!(
            selection.apply(answer.clone()),
            json!({"kind": "drive#fileList", "nextPageToken": "t", "files": [{"id": "a", "name": "n"}]})
        );
        assert_eq!(
            Selection::parse("files(*)").unwrap().apply(answer.clone())["files"][0]["size"],
            "1"
        );
        // Without nextPageToken in `fields`, the answer has none: the client believes it saw the last page.
        assert!(Selection::parse("files(*)").unwrap().apply(answer)["nextPageToken"].is_null());
        assert!(Selection::parse("files(id").is_err());
    }

    #[test]
    fn bytes_are_the_same_however_they_are_chunked() {
        let tree = FileTree {
            files: 1,
            size: 200_003,
            ..FileTree::default()
        };
        let body = tree.bytes_of(0, None);
        let whole = body.fill(0, 200_003);
        assert_eq!(&whole[5..13], &body.fill(5, 8)[..]);
        assert_eq!(&whole[65_536..65_540], &body.fill(65_536, 4)[..]);
        let mut changed = tree.clone();
        changed.generations.insert(0, 1);
        assert_ne!(changed.bytes_of(0, None).fill(0, 64), whole[..64]);
        assert_ne!(changed.checksum(0, 40), tree.checksum(0, 40));
    }
}
