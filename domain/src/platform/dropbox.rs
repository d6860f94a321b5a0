//! Dropbox API v2 (https://www.dropbox.com/developers/documentation/http/documentation).
//!
//! - Authentication: an OAuth 2.0 access token as `Authorization: Bearer` (short-lived; refreshed with the
//!   refresh token `token_access_type=offline` gets).
//! - RPC endpoints (`api.dropboxapi.com`) take a JSON body by `POST` and answer JSON. Lists page by
//!   continuation: `files/list_folder` (`limit` 1–2000, an approximate number) then
//!   `files/list_folder/continue` with `{"cursor"}` while `has_more`; `sharing/list_folders/continue` while the
//!   answer has a `cursor`; `sharing/list_shared_links` takes its `cursor` itself; `file_requests/list_v2`
//!   then `file_requests/list/continue`.
//! - Content-download endpoints (`content.dropboxapi.com`): "arguments are passed in the Dropbox-API-Arg
//!   request header", the body of the answer is the file and its metadata comes back in `Dropbox-API-Result`.
//!   `files/download` with `{"path":"id:…"}` (an id survives renames and moves between listing and download).
//!   Files with `is_downloadable: false` (Paper, cloud docs) cannot be downloaded and are listed only.
//! - `content_hash` (https://www.dropbox.com/developers/reference/content-hash) is Dropbox's hash of a file's
//!   blocks: it changes exactly when the bytes do, so an incremental run downloads only files whose hash moved.
//! - Errors: 400 as plain text (a malformed request), 401 `invalid_access_token`, 409 endpoint errors
//!   `{"error_summary":"path/not_found/..","error":{".tag":"path",…}}` (a file deleted since it was listed),
//!   429 `too_many_requests` with `Retry-After`. Dropbox publishes no rate figure; 10 requests/s per
//!   connection stays well under what it answers without 429.
//!
//! Scopes are per data type: the base only reads the account (the identity call).
//!
//! **Restore of files** ([`FILE_WRITES`]): a new folder `POST /2/files/create_folder_v2`
//! (https://www.dropbox.com/developers/documentation/http/documentation#files-create_folder) with
//! `{"path", "autorename": false}` (answer `{"metadata": {…, "path_display"}}`; a name in use is 409
//! `path/conflict/folder`), and each file `POST https://content.dropboxapi.com/2/files/upload` (#files-upload),
//! the bytes as the body (`application/octet-stream`), the argument in `Dropbox-API-Arg`:
//! `{"path", "mode": "add", "autorename": true, "mute": true}`: `add` never overwrites, `autorename` gives a
//! name in use another one. "Do not use this to upload a file larger than 150 MB": a larger file goes through
//! an upload session (`files/upload_session/start`, `append_v2`, `finish`, on the content host), in chunks of
//! 8 MiB ("a multiple of 4 MiB" except the last, as `upload_session/append_v2` asks). Dropbox addresses folders by path, so a folder's reference is its
//! `path_display`; the backed-up folders come from each file's `path_display`. Writes need
//! `files.content.write`.
//!
//! An upload whose answer was lost may have been taken: sent again, a `files/upload` (`add`, `autorename`)
//! would keep a second copy `name (1).ext`, and a session's `finish` is answered 409 `lookup_failed/closed`
//! (or `not_found`) since the session is committed. So the file is first looked up at its path,
//! `POST /2/files/get_metadata` (#files-get_metadata) with `{"path"}` (answer: its metadata, `.tag` `file`
//! with `size` and `content_hash`; nothing there: 409 `path/not_found`), and taken as the upload when its
//! size and `content_hash` are those of the bytes sent.

use super::writes::{
    ContentHash, FileWrites, FolderRequest, LargeUpload, Placement, UploadBody, UploadLookup,
    UploadRequest,
};
use super::*;

/// Dropbox's 409 for a path (or id) that no longer exists.
const GONE: &[ErrorMatch] = &[ErrorMatch {
    status: 409,
    pointer: "/error_summary",
    prefixes: &["path/not_found", "path_lookup/not_found"],
}];

pub(super) const PLATFORM: Platform = Platform {
    id: "dropbox",
    name: "Dropbox",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::new(
            "files",
            "Files and folders with content",
            Listing {
                content: Some(FileContent {
                    requests: &[ContentRequest {
                        when: &[
                            Condition::is("/.tag", "file"),
                            Condition::is_not("/is_downloadable", "false"),
                        ],
                        method: HttpMethod::Post,
                        host: CONTENT_HOST,
                        json_arg: Some(JsonArg {
                            header: "Dropbox-API-Arg",
                            fields: &[("path", "/id")],
                        }),
                        ..ContentRequest::get("/2/files/download", "/content_hash")
                    }],
                }),
                gone: GONE,
                ..continued(
                    &[Endpoint::post(
                        "/2/files/list_folder",
                        r#"{"path":"","recursive":true,"include_deleted":false,"include_has_explicit_shared_members":true,"include_mounted_folders":true,"include_non_downloadable_files":true,"limit":2000}"#,
                    )],
                    "/entries",
                    "/2/files/list_folder/continue",
                    Some("/has_more"),
                    2000,
                )
            },
        )
        .scopes(&["files.metadata.read", "files.content.read"])
        .file_writes(FILE_WRITES),
        DataType::new(
            "file_revisions",
            "Previous revisions of files",
            Listing {
                // Each revision's `id` is its file's; `rev` names the revision.
                id_field: "rev",
                per_parent: Some(PerParent {
                    data_type: "files",
                    placeholder: "fileId",
                    tag: None,
                }),
                // Folders have no revisions (`list_revisions` answers them 409 `path/not_file`).
                parents_where: &[Condition::is("/.tag", "file")],
                gone: GONE,
                ..Listing::new(
                    &[Endpoint::post(
                        "/2/files/list_revisions",
                        r#"{"path":"{fileId}","mode":"path","limit":100}"#,
                    )],
                    "/entries",
                    Pagination::Single,
                    PageSize::NONE,
                )
            },
        )
        .scopes(&["files.metadata.read"]),
        DataType::new(
            "shared_folders",
            "Shared folders the user can access, with their sharing policies",
            Listing {
                id_field: "shared_folder_id",
                ..continued(
                    &[Endpoint::post("/2/sharing/list_folders", r#"{"limit":1000}"#)],
                    "/entries",
                    "/2/sharing/list_folders/continue",
                    None,
                    1000,
                )
            },
        )
        .scopes(&["sharing.read"]),
        DataType::new(
            "shared_links",
            "Shared links and their settings",
            Listing {
                // A link has no id of its own; its URL names it.
                id_field: "url",
                ..continued(
                    &[Endpoint::post("/2/sharing/list_shared_links", "{}")],
                    "/links",
                    "/2/sharing/list_shared_links",
                    Some("/has_more"),
                    0,
                )
            },
        )
        .scopes(&["sharing.read"]),
        DataType::new(
            "file_requests",
            "File requests",
            continued(
                &[Endpoint::post("/2/file_requests/list_v2", r#"{"limit":1000}"#)],
                "/file_requests",
                "/2/file_requests/list/continue",
                Some("/has_more"),
                1000,
            ),
        )
        .scopes(&["file_requests.read"]),
    ],
    // Who the user is (the identity call); each data type adds its own.
    oauth_scopes: &["account_info.read"],
    api_base_url: "https://api.dropboxapi.com",
    api_key_auth: None,
    api_headers: &[],
    url_params: &[],
    identity: Identity {
        // Dropbox's RPC endpoints only answer POST.
        method: HttpMethod::Post,
        ..Identity::get(
            "/2/users/get_current_account",
            &["/account_id"],
            &["/email", "/name/display_name"],
        )
    },
    oauth: Some(Oauth {
        // Dropbox issues short-lived access tokens; a refresh token only when asked for offline access.
        authorize_params: &[("token_access_type", "offline")],
        ..Oauth::new(
            "https://www.dropbox.com/oauth2/authorize",
            "https://api.dropboxapi.com/oauth2/token",
        )
    }),
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/error_summary"],
    // 401 `invalid_access_token` / `expired_access_token` (HTTP API, "Errors").
    credentials_rejected: REJECTED_401,
};

/// The content host (`https://content.dropboxapi.com`), `LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL` elsewhere.
const CONTENT_HOST: ContentHost = ContentHost::Other {
    name: "CONTENT",
    url: "https://content.dropboxapi.com",
};

/// Files restored into a new folder (see the module).
pub(super) const FILE_WRITES: FileWrites = FileWrites {
    root: "",
    create_folder: FolderRequest {
        host: ContentHost::Api,
        path: "/2/files/create_folder_v2",
        query: &[],
        body: r#"{"path":"{parent}/{name}","autorename":false}"#,
        new_ref: "/metadata/path_display",
    },
    upload: UploadRequest {
        host: CONTENT_HOST,
        path: "/2/files/upload",
        query: &[],
        body: UploadBody::ArgHeader("Dropbox-API-Arg"),
        metadata: r#"{"path":"{parent}/{name}","mode":"add","autorename":true,"mute":true}"#,
        new_id: "/id",
        // "Do not use this to upload a file larger than 150 MB."
        max_bytes: 150 * 1024 * 1024,
        large: Some(LargeUpload::Session {
            start: "/2/files/upload_session/start",
            append: "/2/files/upload_session/append_v2",
            finish: "/2/files/upload_session/finish",
            chunk_bytes: 8 * 1024 * 1024,
            // An append retried after its answer was lost, which Dropbox had applied.
            wrong_offset: ErrorMatch {
                status: 409,
                pointer: "/error_summary",
                prefixes: &["lookup_failed/incorrect_offset/"],
            },
            correct_offset: "/error/lookup_failed/correct_offset",
            // A finish retried after its answer was lost, which Dropbox had committed.
            closed: ErrorMatch {
                status: 409,
                pointer: "/error_summary",
                prefixes: &["lookup_failed/closed/", "lookup_failed/not_found/"],
            },
        }),
        lost_answer: Some(UploadLookup {
            host: ContentHost::Api,
            path: "/2/files/get_metadata",
            body: r#"{"path":"{parent}/{name}","include_deleted":false}"#,
            not_found: ErrorMatch {
                status: 409,
                pointer: "/error_summary",
                prefixes: &["path/not_found/"],
            },
            kind: Condition::is("/.tag", "file"),
            size: "/size",
            hash: "/content_hash",
            new_id: "/id",
            hash_kind: ContentHash::Sha256OfBlocks {
                block_bytes: 4 * 1024 * 1024,
            },
        }),
    },
    placement: Placement::Path("/path_display"),
    name: "/name",
    folder: &[Condition::is("/.tag", "folder")],
    scopes: &["files.content.write"],
};

/// An RPC list continued with its cursor at `continue_path`; `size` records a request, asked for in the
/// body (Dropbox has no query parameters), 0 where the endpoint takes no limit.
const fn continued(
    endpoints: &'static [Endpoint],
    records: &'static str,
    continue_path: &'static str,
    more: Option<&'static str>,
    size: u32,
) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::ContinueWithCursor {
            path: continue_path,
            cursor: "/cursor",
            more,
        },
        PageSize { param: None, size },
    )
}
