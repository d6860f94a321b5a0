//! Keap REST API v1 (https://developer.keap.com/docs/rest/).
//!
//! - Authentication: a personal access token or service account key as `X-Keap-API-Key`, or an OAuth access
//!   token as `Authorization: Bearer`.
//! - Lists: `GET /<type>?limit=&offset=` → `{"<type>":[…],"count":<total>,"next":<url>,"previous":<url>}`;
//!   `limit` ≤ 1000. `next` is sent even past the end (so a short page ends the list, and the URL, which names
//!   Keap's host, is never followed). Contacts take `since`/`until` on their last update.
//! - Errors: `{"message":…}`, and Apigee's `{"fault":{"faultstring":…}}` from the gateway. Rate limit: 25
//!   requests/s per key.

use super::writes::{MatchBy, RecordWrites, Unset, WriteBody, WriteMethod};
use super::*;

/// Contacts' writes (REST v1 reference, <https://developer.infusionsoft.com/docs/rest/#tag/Contact>):
/// `POST /contacts` creates (201, the contact with its numeric `id`; at least an e-mail address or a phone
/// number), `PATCH /contacts/{id}` updates the fields sent (200); plain JSON bodies in the contact's own
/// shape. Keap documents no idempotency key: a contact is recognised by its first e-mail address.
/// `tag_ids`, `owner_id`, `email_status` and the dates are not a contact's own fields to send (tags are
/// applied through their own calls; opt-in status is the recipient's).
const CONTACT_FIELDS: &[&str] = &[
    "given_name",
    "middle_name",
    "family_name",
    "email_addresses",
    "phone_numbers",
    "addresses",
    "job_title",
    "website",
    "birthday",
    "spouse_name",
    "preferred_name",
    "prefix",
    "suffix",
    "contact_type",
];

const CONTACT_WRITES: RecordWrites = RecordWrites {
    create: "/contacts",
    update: Some("/contacts/{id}"),
    create_fields: CONTACT_FIELDS,
    update_fields: CONTACT_FIELDS,
    body: WriteBody::Json {
        envelope: None,
        unset: Unset::Null,
    },
    update_method: WriteMethod::Patch,
    matched_by: MatchBy::Key("/email_addresses/0/email"),
    idempotency_key: false,
    ..RecordWrites::BASE
};

pub(super) const PLATFORM: Platform = Platform {
    id: "keap",
    name: "Keap",
    category: "crm",
    auth_types: BOTH,
    credential_fields: &[secret(
        "apiKey",
        "Personal access token or service account key",
    )],
    data_types: &[
        DataType::new(
            "contacts",
            "People in the CRM with their e-mails, phones, addresses and custom fields",
            Listing {
                incremental: Some(SINCE),
                ..listing(&[Endpoint::get("/contacts")], "/contacts")
            },
        )
        .writes(CONTACT_WRITES),
        list(
            "companies",
            "Companies contacts belong to",
            &[Endpoint::get("/companies")],
            "/companies",
        ),
        list(
            "opportunities",
            "Sales opportunities and their pipeline stage",
            &[Endpoint::get("/opportunities")],
            "/opportunities",
        ),
        list(
            "orders",
            "E-commerce orders with their line items",
            &[Endpoint::get("/orders")],
            "/orders",
        ),
        list(
            "subscriptions",
            "Recurring billing subscriptions",
            &[Endpoint::get("/subscriptions")],
            "/subscriptions",
        ),
        list(
            "transactions",
            "Payment transactions",
            &[Endpoint::get("/transactions")],
            "/transactions",
        ),
        list(
            "products",
            "Products and their subscription plans",
            &[Endpoint::get("/products")],
            "/products",
        ),
        list(
            "tags",
            "Tags and their categories",
            &[Endpoint::get("/tags")],
            "/tags",
        ),
        list(
            "tasks",
            "Tasks assigned to users",
            &[Endpoint::get("/tasks")],
            "/tasks",
        ),
        list(
            "notes",
            "Notes attached to contacts",
            &[Endpoint::get("/notes")],
            "/notes",
        ),
        list(
            "emails",
            "E-mails sent to and received from contacts",
            &[Endpoint::get("/emails")],
            "/emails",
        ),
        list(
            "appointments",
            "Calendar appointments",
            &[Endpoint::get("/appointments")],
            "/appointments",
        ),
        list(
            "campaigns",
            "Automation campaigns and their sequences",
            &[Endpoint::get("/campaigns")],
            "/campaigns",
        ),
        list(
            "users",
            "Users of the Keap application",
            &[Endpoint::get("/users")],
            "/users",
        ),
    ],
    // Keap has a single OAuth scope.
    oauth_scopes: &["full"],
    api_base_url: "https://api.infusionsoft.com/crm/rest/v1",
    // Personal access tokens and service account keys share this header.
    api_key_auth: Some(ApiAuth::Header {
        header: "X-Keap-API-Key",
        token_field: "apiKey",
    }),
    api_headers: &[],
    url_params: &[],
    // Works for both key kinds; `/oauth/connect/userinfo` needs a user context a service key lacks.
    // The account profile answers personal access tokens, service account keys and OAuth tokens alike
    // (`/oauth/connect/userinfo` needs a user, which a service account key lacks). It has no id: the
    // account's e-mail is the closest stable thing that names it.
    identity: Identity::get("/account/profile", &["/email"], &["/name", "/email"]),
    oauth: Some(Oauth::new(
        "https://accounts.infusionsoft.com/app/oauth/authorize",
        "https://api.infusionsoft.com/token",
    )),
    rate: DefaultRate::per_second(25.0),
    error_messages: &["/message", "/fault/faultstring"],
    // A key that is not valid (or an expired OAuth token): 401 (REST v1 reference, "Authentication").
    credentials_rejected: REJECTED_401,
};

/// Keap pages overlap by this many records: up to `OVERLAP - 1` records deleted before the position between
/// two requests cost nothing; more cost one re-read of a page per `200 - OVERLAP` of them. 5% more records
/// read, and about 5% more requests.
const OVERLAP: u32 = 10;

/// A Keap list: records under the data type's own name, 200 per page by offset, `count` the total.
const fn listing(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::Offset {
            offset: OffsetParam::Param("offset"),
            overlap: OVERLAP,
            total: Some("/count"),
            used_limit: None,
        },
        PageSize::param("limit", 200),
    )
}

/// A data type listed whole on every run: only contacts can be filtered by last update (`since`); the other
/// lists' date filters are on creation or due dates.
const fn list(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    records: &'static str,
) -> DataType {
    DataType::new(name, description, listing(endpoints, records))
}

/// Contacts by `since` on their last update. Keap documents no delay for it (it reads the records, not an
/// index); two minutes of lookback cover writes stamped before they commit and clock differences between
/// Keap's servers, at a small cost, as contacts change slowly.
const SINCE: IncrementalFetch = IncrementalFetch {
    cursor_field: "last_updated",
    filter: TimeFilter::QueryParam {
        param: "since",
        format: TimeFormat::Rfc3339,
    },
    record_time: TimeField {
        field: "last_updated",
        nested: None,
        format: TimeFormat::Rfc3339,
    },
    lookback: Duration::from_secs(2 * 60),
};
