//! HighLevel (GoHighLevel) API v2 (https://highlevel.stoplight.io/docs/integrations/).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "gohighlevel",
    name: "HighLevel",
    category: "crm",
    auth_types: BOTH,
    credential_fields: &[
        secret(
            "privateIntegrationToken",
            "Private integration token (pit-…)",
        ),
        plain(
            "locationId",
            "Sub-account (location) id",
            CredentialFieldType::String,
        )
        .shaped(FieldShape::Identifier),
    ],
    data_types: &[
        DataType::not_listed("contacts", "Contacts with custom fields"),
        DataType::not_listed("opportunities", "Opportunities"),
        DataType::not_listed("pipelines", "Opportunity pipelines and stages"),
        DataType::not_listed("calendars", "Calendars"),
        DataType::not_listed("appointments", "Calendar events and appointments"),
        DataType::not_listed("conversations", "Conversations with contacts"),
        DataType::not_listed("messages", "Messages of conversations (SMS, e-mail, chat)"),
        DataType::not_listed("users", "Users of the sub-account"),
        DataType::not_listed("tags", "Contact tags"),
        DataType::not_listed("custom_fields", "Custom field definitions"),
        DataType::not_listed("forms", "Forms"),
        DataType::not_listed("form_submissions", "Form submissions"),
        DataType::not_listed("surveys", "Surveys"),
        DataType::not_listed("invoices", "Invoices"),
        DataType::not_listed("products", "Products"),
        DataType::not_listed("workflows", "Workflows (names and status)"),
        DataType::not_listed("campaigns", "Campaigns"),
    ],
    oauth_scopes: &[
        "locations.readonly",
        "contacts.readonly",
        "opportunities.readonly",
        "calendars.readonly",
        "calendars/events.readonly",
        "conversations.readonly",
        "conversations/message.readonly",
        "users.readonly",
        "locations/tags.readonly",
        "locations/customFields.readonly",
        "forms.readonly",
        "surveys.readonly",
        "invoices.readonly",
        "products.readonly",
        "workflows.readonly",
        "campaigns.readonly",
    ],
    api_base_url: "https://services.leadconnectorhq.com",
    api_key_auth: Some(ApiAuth::Bearer {
        token_field: "privateIntegrationToken",
    }),
    // API v2 refuses requests without a version header.
    api_headers: &[("Version", "2021-07-28")],
    url_params: &[],
    // "Get Sub-Account": needs the `locations.readonly` scope the token is created with.
    identity: Identity::get(
        "/locations/{locationId}",
        &["/location/id"],
        &["/location/name", "/location/id"],
    ),
    oauth: Some(Oauth {
        // A location-level token says which sub-account it is for; API paths need it.
        token_settings: &[("locationId", "locationId"), ("companyId", "companyId")],
        ..Oauth::new(
            "https://marketplace.gohighlevel.com/oauth/chooselocation",
            "https://services.leadconnectorhq.com/oauth/token",
        )
    }),
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/message"],
};
