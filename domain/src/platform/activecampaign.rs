//! ActiveCampaign API v3 (https://developers.activecampaign.com/reference/overview).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "activecampaign",
    name: "ActiveCampaign",
    category: "marketing",
    auth_types: API_KEY,
    credential_fields: &[
        plain(
            "apiUrl",
            "API URL (https://<account>.api-us1.com)",
            CredentialFieldType::Url,
        ),
        secret("apiKey", "API key"),
    ],
    data_types: &[
        DataType::not_listed("contacts", "Contacts with custom field values"),
        DataType::not_listed("accounts", "Accounts (companies)"),
        DataType::not_listed("deals", "Deals"),
        DataType::not_listed("lists", "Lists"),
        DataType::not_listed("tags", "Tags"),
        DataType::not_listed("contact_tags", "Which contact carries which tag"),
        DataType::not_listed("custom_fields", "Custom field definitions"),
        DataType::not_listed("campaigns", "Campaigns"),
        DataType::not_listed("messages", "Campaign messages"),
        DataType::not_listed("automations", "Automations"),
        DataType::not_listed("notes", "Notes"),
        DataType::not_listed("tasks", "Deal and contact tasks"),
        DataType::not_listed("users", "Users of the account"),
    ],
    oauth_scopes: &[],
    api_base_url: "{apiUrl}/api/3",
    api_key_auth: Some(ApiAuth::Header {
        header: "Api-Token",
        token_field: "apiKey",
    }),
    api_headers: &[],
    url_params: &[],
    identity: Identity::get(
        "/users/me",
        &["/user/id"],
        &["/user/email", "/user/username"],
    ),
    oauth: None,
    rate: DefaultRate::per_second(5.0),
    error_messages: &["/message", "/errors/0/title"],
};
