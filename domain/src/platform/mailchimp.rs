//! Mailchimp Marketing API 3.0 (https://mailchimp.com/developer/marketing/api/).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

pub(super) const PLATFORM: Platform = Platform {
    id: "mailchimp",
    name: "Mailchimp",
    category: "marketing",
    auth_types: API_KEY,
    credential_fields: &[
        secret("apiKey", "API key (ends with the data centre, e.g. -us21)")
            .shaped(FieldShape::DataCenterSuffix),
    ],
    data_types: &[
        DataType::not_listed("audiences", "Audiences (lists) and their settings"),
        DataType::not_listed(
            "audience_members",
            "Members of each audience with merge fields and status",
        ),
        DataType::not_listed("segments", "Segments and tags of audiences"),
        DataType::not_listed("merge_fields", "Merge field definitions of audiences"),
        DataType::not_listed(
            "interest_categories",
            "Interest categories (groups) of audiences",
        ),
        DataType::not_listed("campaigns", "Campaigns with their content"),
        DataType::not_listed("campaign_reports", "Campaign reports"),
        DataType::not_listed("templates", "E-mail templates"),
        DataType::not_listed("automations", "Classic automations"),
        DataType::not_listed("landing_pages", "Landing pages"),
        DataType::not_listed("ecommerce_stores", "Connected e-commerce stores"),
    ],
    oauth_scopes: &[],
    api_base_url: "https://{dc}.api.mailchimp.com/3.0",
    // Mailchimp ignores the Basic user name.
    api_key_auth: Some(ApiAuth::Basic {
        user: BasicPart::Literal("anystring"),
        password: BasicPart::Field("apiKey"),
    }),
    api_headers: &[],
    url_params: &[UrlParam::SuffixOf {
        name: "dc",
        field: "apiKey",
    }],
    identity: Identity::get("/", &["/account_id"], &["/account_name"]),
    oauth: None,
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/detail", "/title"],
};
