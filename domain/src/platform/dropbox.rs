//! Dropbox API v2 (https://www.dropbox.com/developers/documentation/http/documentation).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "dropbox",
    name: "Dropbox",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::not_listed("files", "Files and folders with content"),
        DataType::not_listed("file_revisions", "Previous revisions of files"),
        DataType::not_listed("shared_folders", "Shared folders and their members"),
        DataType::not_listed("shared_links", "Shared links and their settings"),
        DataType::not_listed("file_requests", "File requests"),
    ],
    oauth_scopes: &[
        "account_info.read",
        "files.metadata.read",
        "files.content.read",
        "sharing.read",
        "file_requests.read",
    ],
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
};
