//! Google Drive API v3 (https://developers.google.com/drive/api/reference/rest/v3).
//!
//! - Authentication: an OAuth 2.0 access token as `Authorization: Bearer`.
//! - Lists (`files.list`, `drives.list`, `permissions.list`, `revisions.list`, `comments.list`): `pageSize`
//!   (files and revisions 1–1000, drives, permissions and comments 1–100), `pageToken` ← `nextPageToken`,
//!   which is "absent if the end of the files list has been reached"; "partial or empty result pages are
//!   possible even before the end". A partial response returns only the fields named in `fields`, so every
//!   listing names `nextPageToken` there (without it the first page would look like the last); comments and
//!   replies refuse a request without `fields` at all. `q=trashed = false` leaves the bin out.
//! - Content (https://developers.google.com/drive/api/guides/manage-downloads): blob files with
//!   `GET /files/{id}?alt=media`; Google Docs, Sheets, Slides, Drawings and Apps Script are not files with
//!   bytes and are exported (`GET /files/{id}/export?mimeType=…`, "the exported content is limited to
//!   10 MB": a bigger document answers 403 `exportSizeLimitExceeded` and is recorded as not stored); other
//!   Google types (folders, Forms, Sites, shortcuts) have no content.
//! - Errors: `{"error":{"code":…,"message":…,"errors":[{"domain":…,"reason":…,"message":…}]}}`. Rate limits
//!   (https://developers.google.com/drive/api/guides/limits): 12,000 queries per minute per user and per
//!   project; over them Drive answers 403 `userRateLimitExceeded` / `rateLimitExceeded` or 429, all waited
//!   out with backoff ("exponential backoff" is Drive's documented remedy).
//!
//! **Gmail is not part of this platform.** The catalog once listed Gmail messages and labels here. They are
//! a different product with a different consent: Gmail's read scope is a restricted scope that Google shows
//! users as "read all your email" and that needs Google's security assessment, and the issue is explicit that
//! a Drive backup must never ask for it. A Gmail backup also needs a mechanism the engine does not have (one
//! `users.messages.get?format=raw` per listed id, each answer a single record) and its own quota (250 units
//! per user per second). It belongs in a platform of its own (`gmail`), with its own connection, so it was
//! removed here rather than kept behind a per-data-type scope.
//!
//! **Restore of files** ([`FILE_WRITES`], https://developers.google.com/drive/api/guides/folder and
//! …/manage-uploads): a new folder `POST /drive/v3/files` with `mimeType: application/vnd.google-apps.folder`
//! and `parents`; each file `POST /upload/drive/v3/files?uploadType=multipart` (a `multipart/related` body:
//! the JSON metadata `{name, parents, mimeType}`, then the bytes), which Drive documents for files of 5 MB or
//! less; a larger file goes through a resumable upload (`uploadType=resumable`: the metadata with
//! `X-Upload-Content-Type` and `X-Upload-Content-Length`, then every byte in one `PUT` to the session URI the
//! answer's `Location` gives). A Google Doc, Sheet or Slides backed up as its Office export is uploaded as
//! that Office file (`name.docx`, its Office `mimeType`): not converted back into a Google Doc, which would
//! change it (Drive's import is lossy the other way too). Drive lets names repeat, so nothing is ever
//! overwritten. The folders come from each file's `parents` and the folder records of the same backup
//! (`My Drive` itself, not a record, is the top). Writes need `drive.file` ("files created or opened by the
//! app"), the narrowest scope that can create the restore folder and write into it.
//!
//! Scopes: the base asks only who the user is; each data type adds what it needs. `drive.readonly` for file
//! contents, shared drives and comments; `drive.metadata.readonly` is enough for permissions and revisions
//! (both lists accept it), so a backup of those alone never asks to read file contents.

use super::writes::{FileWrites, FolderRequest, LargeUpload, Placement, UploadBody, UploadRequest};
use super::*;

const DRIVE_READONLY: &str = "https://www.googleapis.com/auth/drive.readonly";
const DRIVE_METADATA_READONLY: &str = "https://www.googleapis.com/auth/drive.metadata.readonly";

/// Google's own types (`application/vnd.google-apps.*`) have no bytes of their own.
const GOOGLE_TYPES: &str = "application/vnd.google-apps.";
const FOLDER: &str = "application/vnd.google-apps.folder";

pub(super) const PLATFORM: Platform = Platform {
    id: "google",
    name: "Google Drive",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::new(
            "files",
            "Files and folders in My Drive, with content (Google formats exported)",
            Listing {
                // Every field of each file: `files(*)`; `nextPageToken` or the listing would stop after a page.
                query: &[
                    ("q", "trashed = false"),
                    ("fields", "nextPageToken,incompleteSearch,files(*)"),
                ],
                content: Some(FileContent { requests: CONTENT }),
                ..paged(&[Endpoint::get("/drive/v3/files")], "/files", 1000)
            },
        )
        .scopes(&[DRIVE_READONLY])
        .file_writes(FILE_WRITES),
        DataType::new(
            "shared_drives",
            "Shared drives the user belongs to",
            Listing {
                query: &[("fields", "nextPageToken,drives(*)")],
                ..paged(&[Endpoint::get("/drive/v3/drives")], "/drives", 100)
            },
        )
        .scopes(&[DRIVE_READONLY]),
        DataType::new(
            "permissions",
            "Who each file is shared with",
            Listing {
                query: &[
                    ("fields", "nextPageToken,permissions(*)"),
                    ("supportsAllDrives", "true"),
                ],
                ..per_file(
                    &[Endpoint::get("/drive/v3/files/{fileId}/permissions")],
                    "/permissions",
                    100,
                )
            },
        )
        .scopes(&[DRIVE_METADATA_READONLY]),
        DataType::new(
            "revisions",
            "Revision history of files",
            Listing {
                query: &[("fields", "nextPageToken,revisions(*)")],
                // Folders have no revisions.
                parents_where: &[Condition::is_not("/mimeType", FOLDER)],
                ..per_file(
                    &[Endpoint::get("/drive/v3/files/{fileId}/revisions")],
                    "/revisions",
                    1000,
                )
            },
        )
        .scopes(&[DRIVE_METADATA_READONLY]),
        DataType::new(
            "comments",
            "Comments and replies on files",
            Listing {
                // Comments refuse a request without `fields`; `comments(*)` includes the replies.
                query: &[("fields", "nextPageToken,comments(*)")],
                parents_where: &[Condition::is_not("/mimeType", FOLDER)],
                ..per_file(
                    &[Endpoint::get("/drive/v3/files/{fileId}/comments")],
                    "/comments",
                    100,
                )
            },
        )
        .scopes(&[DRIVE_READONLY]),
    ],
    // Who the user is (the identity call); each data type adds its Drive scope.
    oauth_scopes: &["openid", "email"],
    api_base_url: "https://www.googleapis.com",
    api_key_auth: None,
    api_headers: &[],
    url_params: &[],
    identity: Identity::get("/oauth2/v3/userinfo", &["/sub"], &["/email", "/name"]),
    oauth: Some(Oauth {
        // Without `access_type=offline` and `prompt=consent`, Google issues no refresh token (or only on the
        // very first consent). `include_granted_scopes=true` ("Using OAuth 2.0 for Web Server
        // Applications", incremental authorization): the token of a later consent, when a data type is
        // added, covers the scopes granted before as well as the new ones.
        authorize_params: &[
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
        ..Oauth::new(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
        )
    }),
    rate: DefaultRate::per_second(10.0).limited_when(&[ErrorMatch {
        status: 403,
        pointer: "/error/errors/0/reason",
        prefixes: &["userRateLimitExceeded", "rateLimitExceeded"],
    }]),
    error_messages: &["/error/message"],
    // 401 `authError` "Invalid Credentials" (Drive API, "Resolve errors"); 403s are permissions and limits.
    credentials_rejected: REJECTED_401,
};

/// Files restored into a new folder (see the module).
pub(super) const FILE_WRITES: FileWrites = FileWrites {
    // "My Drive"'s alias.
    root: "root",
    create_folder: FolderRequest {
        host: ContentHost::Api,
        path: "/drive/v3/files",
        query: &[("fields", "id")],
        body: r#"{"name":"{name}","mimeType":"application/vnd.google-apps.folder","parents":["{parent}"]}"#,
        new_ref: "/id",
    },
    upload: UploadRequest {
        host: ContentHost::Api,
        path: "/upload/drive/v3/files",
        query: &[("uploadType", "multipart"), ("fields", "id")],
        body: UploadBody::Related,
        metadata: r#"{"name":"{name}","parents":["{parent}"],"mimeType":"{mimeType}"}"#,
        new_id: "/id",
        // "Use this upload type to quickly transfer a small file (5 MB or less)."
        max_bytes: 5 * 1024 * 1024,
        large: Some(LargeUpload::Resumable {
            path: "/upload/drive/v3/files",
            query: &[("uploadType", "resumable"), ("fields", "id")],
        }),
        lost_answer: None,
    },
    placement: Placement::Parents("/parents"),
    name: "/name",
    folder: &[Condition::is("/mimeType", FOLDER)],
    scopes: &["https://www.googleapis.com/auth/drive.file"],
};

/// A Drive list: `{…,"<records>":[…],"nextPageToken":…}`, `pageSize` at most `max`.
const fn paged(endpoints: &'static [Endpoint], records: &'static str, max: u32) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::CursorParam {
            param: "pageToken",
            cursor: "/nextPageToken",
        },
        PageSize::param("pageSize", max),
    )
}

/// A list of each file's own records; the records do not name their file, so each gets `fileId`.
const fn per_file(endpoints: &'static [Endpoint], records: &'static str, max: u32) -> Listing {
    Listing {
        per_parent: Some(PerParent {
            data_type: "files",
            placeholder: "fileId",
            tag: Some("fileId"),
        }),
        ..paged(endpoints, records, max)
    }
}

/// How each file's bytes are fetched, in order: Google's own types exported to the formats of
/// https://developers.google.com/drive/api/guides/ref-export-formats (the Office formats, PDF for drawings,
/// Apps Script's JSON), each versioned by Drive's `version` (it moves with every change); any other type
/// downloaded as it is, versioned by its `md5Checksum`. `supportsAllDrives`: files shared with the user may
/// live in a shared drive.
const CONTENT: &[ContentRequest] = &[
    export(
        &[Condition::is(
            "/mimeType",
            "application/vnd.google-apps.document",
        )],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &[(
            "mimeType",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )],
    ),
    export(
        &[Condition::is(
            "/mimeType",
            "application/vnd.google-apps.spreadsheet",
        )],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &[(
            "mimeType",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )],
    ),
    export(
        &[Condition::is(
            "/mimeType",
            "application/vnd.google-apps.presentation",
        )],
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        &[(
            "mimeType",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        )],
    ),
    export(
        &[Condition::is(
            "/mimeType",
            "application/vnd.google-apps.drawing",
        )],
        "application/pdf",
        &[("mimeType", "application/pdf")],
    ),
    export(
        &[Condition::is(
            "/mimeType",
            "application/vnd.google-apps.script",
        )],
        "application/vnd.google-apps.script+json",
        &[("mimeType", "application/vnd.google-apps.script+json")],
    ),
    ContentRequest {
        when: &[Condition::not_starts_with("/mimeType", GOOGLE_TYPES)],
        query: &[("alt", "media"), ("supportsAllDrives", "true")],
        ..ContentRequest::get("/drive/v3/files/{id}", "/md5Checksum")
    },
];

/// An export of the Google type `when` selects, to `format` (also the `mimeType` query value).
const fn export(
    when: &'static [Condition],
    format: &'static str,
    query: &'static [(&'static str, &'static str)],
) -> ContentRequest {
    ContentRequest {
        when,
        query,
        export_as: Some(format),
        ..ContentRequest::get("/drive/v3/files/{id}/export", "/version")
    }
}
