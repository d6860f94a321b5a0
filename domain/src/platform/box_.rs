//! Box API 2.0 (https://developer.box.com/reference/).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "box",
    name: "Box",
    category: "file_storage",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::not_listed("files", "Files with content"),
        DataType::not_listed("folders", "Folder tree"),
        DataType::not_listed("file_versions", "Previous versions of files"),
        DataType::not_listed("collaborations", "Who has access to each folder or file"),
        DataType::not_listed("comments", "Comments on files"),
        DataType::not_listed("tasks", "Tasks on files"),
        DataType::not_listed("web_links", "Bookmarks stored in folders"),
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
};
