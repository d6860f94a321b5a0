//! ActiveCampaign API v3 (https://developers.activecampaign.com/reference/overview).
//!
//! - Authentication (https://developers.activecampaign.com/reference/authentication): the user's API key in
//!   the `Api-Token` header, against the account's own API URL shown in its Developer settings
//!   (`https://<account>.api-us1.com`, or another region's; ActiveCampaign warns not to build it from the
//!   account name, so the customer gives it whole, and it is accepted only on the documented domains,
//!   [`API_DOMAINS`]) with
//!   `/api/3` after it.
//! - Collections (https://developers.activecampaign.com/reference/pagination): `limit` (default 20, at most
//!   100) and a 0-based `offset`; the records under the collection's own name, the total in `meta.total`
//!   (a numeric string). Ordering is `orders[<field>]=ASC|DESC`, filtering `filters[<field>]=…`. For
//!   contacts the guide recommends `orders[id]=ASC` with `id_greater` over offsets on accounts with many
//!   contacts, so contacts are listed by keyset.
//! - Changes: contacts and deals take `filters[updated_after]` (List all contacts, List all deals) and say
//!   when they changed in `udate` (contacts) and `mdate` (deals). Nothing else filters on its update time.
//! - Errors (https://developers.activecampaign.com/reference/errors): 403 when the request "could not be
//!   authenticated or the authenticated user is not authorized" (a wrong key included: ActiveCampaign sends
//!   no 401, so its 403 is read as "these credentials are not valid", `UNAUTHORIZED`), 404, 422 with
//!   `{"errors":[{"title","detail","code","source"}]}`, and `{"message"}` bodies.
//! - Limits (https://developers.activecampaign.com/reference/rate-limits): 5 requests per second per
//!   account, answered 429 with `Retry-After` in seconds.

use super::writes::{MatchBy, RecordWrites, Unset, WriteBody, WriteMethod};
use super::*;

/// Contacts' writes (<https://developers.activecampaign.com/reference/create-a-new-contact>,
/// <https://developers.activecampaign.com/reference/update-a-contact-new>): `POST /contacts` creates (201),
/// `PUT /contacts/{id}` updates the fields sent (200), both `{"contact": {…}}` and answered with
/// `{"contact": {…, "id": "<numeric string>"}}`. The e-mail address is unique in an account (a second one is
/// a 422 `duplicate`) and recognises a contact re-created; ActiveCampaign has no idempotency key. Custom
/// field values are their own data type (`contact_field_values`), not written back.
const CONTACT_FIELDS: &[&str] = &["email", "firstName", "lastName", "phone"];

const CONTACT_WRITES: RecordWrites = RecordWrites {
    create: "/contacts",
    update: Some("/contacts/{id}"),
    create_fields: CONTACT_FIELDS,
    update_fields: CONTACT_FIELDS,
    body: WriteBody::Json {
        envelope: Some("contact"),
        unset: Unset::Null,
    },
    update_method: WriteMethod::Put,
    new_id: "/contact/id",
    matched_by: MatchBy::Key("/email"),
    idempotency_key: false,
    ..RecordWrites::BASE
};

/// The domains of an account's API URL, `https://<account>.<domain>` ([`FieldShape::AccountUrl`]: https, no
/// port, no user name, no path; anything else is refused when the connection is created or its credentials
/// replaced).
///
/// - `api-us1.com`: "Base URL" (<https://developers.activecampaign.com/reference/url>) gives the API URL as
///   `https://<your-account>.api-us1.com/api/3/`, over HTTPS only, and "Authentication"
///   (<https://developers.activecampaign.com/reference/authentication>) calls
///   `https://123456demo.api-us1.com/api/3/users/me` for the account `123456demo.activehosted.com`.
/// - `activehosted.com`: the account's own host (the same "Authentication" example), which the Developer
///   tab shows as the API URL for some accounts (Nango's connection guide,
///   <https://nango.dev/docs/integrations/all/active-campaign/connect>: "nango.activehosted.com").
/// - `api-<region>.com`: "Base URL" warns that `api-us1.com` is not guaranteed for every account,
///   "particularly users located outside of the United States", and tells integrations to "always use the
///   API URL found in the User's Developer tab": the URL has the form `https://<account>.<region>.com`
///   (`api-us1` being one region), so any region numbered the same way is taken (`is_region` in
///   `credentials.rs`: letters then digits). Whoever registers such a domain reaches, through it, only
///   public addresses: the platform clients refuse to connect a host name built from credentials to a
///   loopback, private or link-local address (`listbackup_commands::public_addresses`).
const API_DOMAINS: &[&str] = &["api-us1.com", "activehosted.com", "api-<region>.com"];

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
        )
        .shaped(FieldShape::AccountUrl(API_DOMAINS)),
        secret("apiKey", "API key"),
    ],
    data_types: &[
        DataType::new(
            "contacts",
            "Contacts (their custom field values are contact_field_values)",
            Listing {
                incremental: Some(updated_after("udate")),
                ..CONTACTS
            },
        )
        .writes(CONTACT_WRITES),
        // `GET /contacts` does not carry the values of custom fields; `GET /fieldValues` lists them all.
        DataType::new(
            "contact_field_values",
            "Custom field values of contacts",
            list(&[Endpoint::get("/fieldValues")], "/fieldValues"),
        ),
        DataType::new(
            "accounts",
            "Accounts (companies)",
            list(&[Endpoint::get("/accounts")], "/accounts"),
        ),
        DataType::new(
            "deals",
            "Deals",
            Listing {
                incremental: Some(updated_after("mdate")),
                ..list(&[Endpoint::get("/deals")], "/deals")
            },
        ),
        DataType::new("lists", "Lists", list(&[Endpoint::get("/lists")], "/lists")),
        DataType::new("tags", "Tags", list(&[Endpoint::get("/tags")], "/tags")),
        DataType::new(
            "contact_tags",
            "Which contact carries which tag",
            list(&[Endpoint::get("/contactTags")], "/contactTags"),
        ),
        DataType::new(
            "custom_fields",
            "Custom field definitions",
            list(&[Endpoint::get("/fields")], "/fields"),
        ),
        DataType::new(
            "campaigns",
            "Campaigns",
            list(&[Endpoint::get("/campaigns")], "/campaigns"),
        ),
        DataType::new(
            "messages",
            "Campaign messages",
            list(&[Endpoint::get("/messages")], "/messages"),
        ),
        DataType::new(
            "automations",
            "Automations",
            list(&[Endpoint::get("/automations")], "/automations"),
        ),
        DataType::new("notes", "Notes", list(&[Endpoint::get("/notes")], "/notes")),
        // Deal tasks are the tasks of deals and of contacts alike (their `reltype` says which).
        DataType::new(
            "tasks",
            "Deal and contact tasks",
            list(&[Endpoint::get("/dealTasks")], "/dealTasks"),
        ),
        DataType::new(
            "users",
            "Users of the account",
            list(&[Endpoint::get("/users")], "/users"),
        ),
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
    // The documented limit, 5 requests per second. It is the account's, shared by every key and
    // integration of the account: two connections to one account together exceed it, and their 429s are
    // waited out (`Retry-After`).
    rate: DefaultRate::per_second(5.0),
    error_messages: &["/message", "/errors/0/title", "/errors/0/detail"],
    // ActiveCampaign sends no 401: a missing or wrong `Api-Token` is a 403 ("could not be authenticated or
    // the authenticated user is not authorized", API reference, "Errors"), whatever its body. Its API keys
    // are the user's own and carry the user's permissions, so a 403 is the key's answer and reconnecting
    // with a valid key is the remedy.
    credentials_rejected: &[ErrorMatch::status(403)],
};

/// 100 records per page, the maximum.
const PAGE: u32 = 100;

/// Pages overlap by this many records: up to 4 records deleted before the position between two requests
/// cost nothing; 5% more records read.
const OVERLAP: u32 = 5;

/// An ActiveCampaign collection: 100 per page by offset, `meta.total` (a string) the total.
const fn list(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::Offset {
            offset: OffsetParam::Param("offset"),
            overlap: OVERLAP,
            total: Some("/meta/total"),
            used_limit: None,
        },
        PageSize::param("limit", PAGE),
    )
}

/// Contacts by keyset, as the pagination guide recommends for large accounts: in id order, each page after
/// the last id of the one before (`id_greater`), until a short page. Contacts added or deleted meanwhile
/// never shift a page.
const CONTACTS: Listing = Listing {
    query: &[("orders[id]", "ASC")],
    ..Listing::new(
        &[Endpoint::get("/contacts")],
        "/contacts",
        Pagination::AfterLastIdUntilShortPage {
            param: "id_greater",
        },
        PageSize::param("limit", PAGE),
    )
};

/// `filters[updated_after]` against the record's `field`. ActiveCampaign's times carry the account's
/// offset (`2024-01-02T03:04:05-05:00`); the filter is "after", exclusive, and ActiveCampaign documents no
/// delay: two minutes of lookback cover writes stamped before they commit and clock differences between
/// its servers.
const fn updated_after(field: &'static str) -> IncrementalFetch {
    IncrementalFetch {
        cursor_field: field,
        filter: TimeFilter::QueryParam {
            param: "filters[updated_after]",
            format: TimeFormat::Rfc3339,
        },
        record_time: TimeField {
            field,
            nested: None,
            format: TimeFormat::Rfc3339,
        },
        lookback: Duration::from_secs(2 * 60),
    }
}
