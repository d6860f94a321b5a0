//! Zendesk Support API v2 (https://developer.zendesk.com/api-reference/ticketing/introduction/).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "zendesk",
    name: "Zendesk",
    category: "support",
    auth_types: API_KEY,
    credential_fields: &[
        plain(
            "subdomain",
            "Subdomain (<subdomain>.zendesk.com)",
            CredentialFieldType::String,
        )
        .shaped(FieldShape::HostLabel),
        plain("email", "Agent e-mail", CredentialFieldType::Email),
        secret("apiToken", "API token"),
    ],
    data_types: &[
        DataType::not_listed("tickets", "Tickets"),
        DataType::not_listed("ticket_comments", "Public and private comments of tickets"),
        DataType::not_listed("users", "End users, agents and admins"),
        DataType::not_listed("organizations", "Organizations"),
        DataType::not_listed("groups", "Agent groups"),
        DataType::not_listed("ticket_fields", "Ticket field definitions"),
        DataType::not_listed("macros", "Macros"),
        DataType::not_listed("views", "Views"),
        DataType::not_listed("triggers", "Triggers"),
        DataType::not_listed("automations", "Automations"),
        DataType::not_listed("satisfaction_ratings", "Customer satisfaction ratings"),
        DataType::not_listed("help_center_articles", "Help Center articles"),
    ],
    oauth_scopes: &[],
    api_base_url: "https://{subdomain}.zendesk.com/api/v2",
    api_key_auth: Some(ApiAuth::Basic {
        user: BasicPart::FieldWithSuffix("email", "/token"),
        password: BasicPart::Field("apiToken"),
    }),
    api_headers: &[],
    url_params: &[],
    identity: Identity::get(
        "/users/me.json",
        &["/user/id"],
        &["/user/email", "/user/name"],
    ),
    oauth: None,
    rate: DefaultRate::per_second(3.0),
    error_messages: &["/error/message", "/description", "/error"],
};
