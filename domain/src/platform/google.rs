//! Google Drive API v3 (https://developers.google.com/drive/api/reference/rest/v3).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "google",
    name: "Google Drive",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::not_listed(
            "files",
            "Files and folders in My Drive, with content (Google formats exported)",
        ),
        DataType::not_listed("shared_drives", "Shared drives the user belongs to"),
        DataType::not_listed("permissions", "Who each file is shared with"),
        DataType::not_listed("revisions", "Revision history of files"),
        DataType::not_listed("comments", "Comments and replies on files"),
        DataType::not_listed("gmail_messages", "Gmail messages (raw RFC 822)"),
        DataType::not_listed("gmail_labels", "Gmail labels"),
    ],
    oauth_scopes: &[
        "openid",
        "email",
        "https://www.googleapis.com/auth/drive.readonly",
        "https://www.googleapis.com/auth/gmail.readonly",
    ],
    api_base_url: "https://www.googleapis.com",
    api_key_auth: None,
    api_headers: &[],
    url_params: &[],
    identity: Identity::get("/oauth2/v3/userinfo", &["/sub"], &["/email", "/name"]),
    oauth: Some(Oauth {
        // Without both, Google issues no refresh token (or only on the very first consent).
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        ..Oauth::new(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
        )
    }),
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/error/message"],
};
