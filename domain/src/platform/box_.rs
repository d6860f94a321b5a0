//! Box API 2.0 (https://developer.box.com/reference/).
//!
//! - Authentication: an OAuth 2.0 access token as `Authorization: Bearer`; the app's `root_readonly` scope
//!   reads every file and folder of the user.
//! - Folders are listed one at a time (`GET /folders/{id}/items`, "All Files" is folder `0`), so files,
//!   folders and web links are found by walking the tree from `0` ([`FolderWalk`]); one answer mixes all
//!   three, each data type keeps its own. Marker paging: `usemarker=true`, `limit` ≤ 1000, `marker` ←
//!   `next_marker` until there is none. `fields` replaces the standard fields by the ones named ("only fields
//!   for the mini representation are returned, additional to the fields requested"), so each data type names
//!   what it keeps.
//! - Content (https://developer.box.com/guides/downloads/file/): `GET /files/{id}/content` answers `302 Found`
//!   with a `Location` on another host (`https://dl.boxcloud.com/d/1/…/download`), a pre-signed URL: it is
//!   followed *without* the access token (credentials never follow a redirect). A file just uploaded may
//!   answer `202` with `Retry-After` until it is ready. `sha1` changes exactly when the bytes do.
//! - Per-file lists: versions and comments page by `offset`/`limit` (≤ 1000) with `total_count`; tasks come in
//!   one answer; folder collaborations page by marker.
//! - Errors: `{"type":"error","status":…,"code":…,"message":…,"request_id":…}`; 429 with `Retry-After`. Rate
//!   limits (https://developer.box.com/guides/api-calls/permissions-and-errors/rate-limits/): 1,000 API
//!   requests per minute per user; 10 requests/s per connection stays under it.
//!
//! **Restore of files** ([`FILE_WRITES`]): a new folder `POST /folders` `{"name", "parent": {"id"}}`
//! (https://developer.box.com/reference/post-folders/), and each file a direct upload
//! `POST https://upload.box.com/api/2.0/files/content` (https://developer.box.com/reference/post-files-content/,
//! https://developer.box.com/guides/uploads/direct/file/): `multipart/form-data` with the `attributes` part
//! (`{"name", "parent": {"id"}}`) before the `file` part, answered `{"entries": [file]}`. A name in use in the
//! folder is 409 `item_name_in_use`: reported for that file, never overwritten (a restore writes into folders
//! it has just created, so only a name the backup held twice meets it). "The direct file upload API supports
//! files up to 50MB in size" and chunked uploads are for files over 20 MB
//! (https://developer.box.com/guides/uploads/, https://developer.box.com/guides/uploads/chunked/): a file
//! over [`DIRECT_UPLOAD_MAX`] goes through a chunked upload session ([`LargeUpload::Parts`]:
//! `POST /files/upload_sessions`, each part `PUT /files/upload_sessions/{id}`, then
//! `POST /files/upload_sessions/{id}/commit`), in parts of the size the session names. Each file goes in the folders of its `path_collection` (without "All Files"). Writes
//! need the `root_readwrite` scope.
//!
//! Collaborations are listed per folder: a file's own collaborations (`GET /files/{id}/collaborations`) would
//! need a second parent data type for one listing, which the engine's per-parent mechanism does not have, and
//! files are most often shared through their folder.

use super::writes::{FileWrites, FolderRequest, LargeUpload, Placement, UploadBody, UploadRequest};

/// The largest file sent in one direct upload, in bytes: "The direct file upload API supports files up to
/// 50MB in size" (<https://developer.box.com/guides/uploads/>); a larger one goes through a chunked upload
/// session.
pub const DIRECT_UPLOAD_MAX: u64 = 50 * 1024 * 1024;
use super::*;

/// Fields of files kept by the `files` data type (beyond the mini representation: id, type, name, etag,
/// sequence_id).
const FILE_FIELDS: &str = "id,type,name,etag,sequence_id,sha1,file_version,size,description,path_collection,\
created_at,modified_at,trashed_at,content_created_at,content_modified_at,created_by,modified_by,owned_by,\
shared_link,parent,item_status,extension,tags,lock,has_collaborations,is_externally_owned,version_number,\
comment_count";
const FOLDER_FIELDS: &str = "id,type,name,etag,sequence_id,description,size,path_collection,created_at,\
modified_at,trashed_at,content_created_at,content_modified_at,created_by,modified_by,owned_by,shared_link,\
folder_upload_email,parent,item_status,tags,has_collaborations,is_externally_owned,sync_state";
const WEB_LINK_FIELDS: &str =
    "id,type,name,etag,sequence_id,url,description,path_collection,created_at,\
modified_at,trashed_at,created_by,modified_by,owned_by,shared_link,parent,item_status";

/// Every folder is walked, from "All Files".
const WALK: FolderWalk = FolderWalk {
    placeholder: "folderId",
    root: "0",
    folder: Condition::is("/type", "folder"),
};

pub(super) const PLATFORM: Platform = Platform {
    id: "box",
    name: "Box",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::new(
            "files",
            "Files with content",
            Listing {
                query: &[("usemarker", "true"), ("fields", FILE_FIELDS)],
                records_where: &[Condition::is("/type", "file")],
                content: Some(FileContent {
                    requests: &[ContentRequest::get("/files/{id}/content", "/sha1")],
                }),
                ..items()
            },
        )
        .file_writes(FILE_WRITES),
        DataType::new(
            "folders",
            "Folder tree",
            Listing {
                query: &[("usemarker", "true"), ("fields", FOLDER_FIELDS)],
                records_where: &[Condition::is("/type", "folder")],
                ..items()
            },
        ),
        DataType::new(
            "file_versions",
            "Previous versions of files",
            // A version does not say whose it is.
            per_file(&[Endpoint::get("/files/{fileId}/versions")], Some("fileId")),
        ),
        DataType::new(
            "collaborations",
            "Who has access to each folder",
            Listing {
                per_parent: Some(PerParent {
                    data_type: "folders",
                    placeholder: "folderId",
                    tag: None,
                }),
                ..Listing::new(
                    &[Endpoint::get("/folders/{folderId}/collaborations")],
                    "/entries",
                    Pagination::CursorParam {
                        param: "marker",
                        cursor: "/next_marker",
                    },
                    PageSize::param("limit", 1000),
                )
            },
        ),
        DataType::new(
            "comments",
            "Comments on files",
            // Each comment names its file (`item`).
            per_file(&[Endpoint::get("/files/{fileId}/comments")], None),
        ),
        DataType::new(
            "tasks",
            "Tasks on files",
            Listing {
                per_parent: Some(PerParent {
                    data_type: "files",
                    placeholder: "fileId",
                    tag: None,
                }),
                // One answer, not paged: `{"total_count":…,"entries":[…]}`.
                ..Listing::new(
                    &[Endpoint::get("/files/{fileId}/tasks")],
                    "/entries",
                    Pagination::Single,
                    PageSize::NONE,
                )
            },
        ),
        DataType::new(
            "web_links",
            "Bookmarks stored in folders",
            Listing {
                query: &[("usemarker", "true"), ("fields", WEB_LINK_FIELDS)],
                records_where: &[Condition::is("/type", "web_link")],
                ..items()
            },
        ),
    ],
    oauth_scopes: &["root_readonly"],
    api_base_url: "https://api.box.com/2.0",
    api_key_auth: None,
    api_headers: &[],
    url_params: &[],
    identity: Identity::get("/users/me", &["/id"], &["/login", "/name"]),
    oauth: Some(Oauth::new(
        "https://account.box.com/api/oauth2/authorize",
        "https://api.box.com/oauth2/token",
    )),
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/message"],
    // 401 with `WWW-Authenticate` for a token that is missing, expired or revoked (API reference, "Errors").
    credentials_rejected: REJECTED_401,
};

/// Files restored into a new folder (see the module).
pub(super) const FILE_WRITES: FileWrites = FileWrites {
    root: "0",
    create_folder: FolderRequest {
        host: ContentHost::Api,
        path: "/folders",
        query: &[],
        body: r#"{"name":"{name}","parent":{"id":"{parent}"}}"#,
        new_ref: "/id",
    },
    upload: UploadRequest {
        // Uploads go to their own host; `LISTBACKUP_PLATFORM_BOX_UPLOAD_URL` replaces it.
        host: ContentHost::Other {
            name: "UPLOAD",
            url: "https://upload.box.com/api/2.0",
        },
        path: "/files/content",
        query: &[],
        body: UploadBody::FormData {
            metadata: "attributes",
            file: "file",
        },
        metadata: r#"{"name":"{name}","parent":{"id":"{parent}"}}"#,
        new_id: "/entries/0/id",
        max_bytes: DIRECT_UPLOAD_MAX,
        large: Some(LargeUpload::Parts {
            create: "/files/upload_sessions",
            session: r#"{"folder_id":"{parent}","file_name":"{name}"}"#,
            part: "/files/upload_sessions/{id}",
            commit: "/files/upload_sessions/{id}/commit",
        }),
        lost_answer: None,
    },
    placement: Placement::Ancestors {
        entries: "/path_collection/entries",
        skip_id: "0",
    },
    name: "/name",
    folder: &[Condition::is("/type", "folder")],
    scopes: &["root_readwrite"],
};

const ITEMS: &[Endpoint] = &[Endpoint::get("/folders/{folderId}/items")];

/// The items of every folder, walked from "All Files", 1000 per page by marker.
const fn items() -> Listing {
    Listing {
        walk: Some(WALK),
        ..Listing::new(
            ITEMS,
            "/entries",
            Pagination::CursorParam {
                param: "marker",
                cursor: "/next_marker",
            },
            PageSize::param("limit", 1000),
        )
    }
}

/// A per-file list paged by offset, `{"total_count":…,"entries":[…],"offset":…,"limit":…}`.
const fn per_file(endpoints: &'static [Endpoint], tag: Option<&'static str>) -> Listing {
    Listing {
        per_parent: Some(PerParent {
            data_type: "files",
            placeholder: "fileId",
            tag,
        }),
        ..Listing::new(
            endpoints,
            "/entries",
            Pagination::Offset {
                offset: OffsetParam::Param("offset"),
                overlap: 1,
                total: Some("/total_count"),
                // Box advises moving the offset by the `limit` answered: `total_count` counts positions.
                used_limit: Some("/limit"),
            },
            PageSize::param("limit", 1000),
        )
    }
}
