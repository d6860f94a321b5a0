//! HubSpot CRM API v3 (https://developers.hubspot.com/docs/api/crm/understanding-the-crm).
//!
//! - Authentication: a private app's access token, or an OAuth access token, as `Authorization: Bearer`.
//! - Objects: `GET /crm/v3/objects/<type>` in id order, `limit` ≤ 100, `after` ← `paging.next.after`;
//!   `archived=false` lists live records. Changes: the CRM search API
//!   (https://developers.hubspot.com/docs/api/crm/search), `POST /crm/v3/objects/<type>/search`: one sort,
//!   at most 200 results a page, never past the 10,000th result of one query.
//! - Errors: `{"status":"error","message":…,"category":…}`. Rate limits: private apps 100 requests per 10 s
//!   (Professional) — 10/s stays inside it; search 5 requests/s per account.

use super::writes::{MatchBy, RecordWrites, Unset, WriteBody, WriteMethod};
use super::*;

/// A CRM object's writes (CRM objects API: <https://developers.hubspot.com/docs/api/crm/understanding-the-crm>,
/// e.g. contacts <https://developers.hubspot.com/docs/api/crm/contacts>): `POST /crm/v3/objects/<type>` creates
/// (201), `PATCH /crm/v3/objects/<type>/{id}` updates (200) only the properties sent, both with
/// `{"properties": {…}}`; "to clear a property value, set it to an empty string". A record is
/// `{id, properties: {…}}`: its writable properties are sent, never `hs_object_id`, `createdate` or the
/// modification dates (HubSpot's to set). HubSpot honours no idempotency key: a contact is recognised by its
/// e-mail address (HubSpot keeps it unique: creating a second one is a 409 `CONFLICT`), companies and deals by
/// all their writable properties. Through OAuth the writes need the object's `crm.objects.<type>.write` scope
/// (<https://developers.hubspot.com/docs/api/scopes>).
const fn crm_writes(
    create: &'static str,
    update: &'static str,
    fields: &'static [&'static str],
    matched_by: MatchBy,
    scopes: &'static [&'static str],
) -> RecordWrites {
    RecordWrites {
        create,
        update: Some(update),
        create_fields: fields,
        update_fields: fields,
        body: WriteBody::Json {
            envelope: Some("properties"),
            unset: Unset::EmptyString,
        },
        update_method: WriteMethod::Patch,
        fields_at: "/properties",
        matched_by,
        scopes,
        idempotency_key: false,
        ..RecordWrites::BASE
    }
}

/// Default contact properties a user sets (the contacts guide's list of default properties); the rest are
/// HubSpot's (`hs_…`, dates, counts).
const CONTACT_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "website",
    "jobtitle",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "lifecyclestage",
];

/// Default company properties a user sets (companies guide).
const COMPANY_PROPERTIES: &[&str] = &[
    "name",
    "domain",
    "phone",
    "website",
    "industry",
    "description",
    "address",
    "city",
    "state",
    "zip",
    "country",
];

/// Default deal properties a user sets (deals guide: `dealname`, `dealstage` and, with several pipelines,
/// `pipeline` are what a create needs).
const DEAL_PROPERTIES: &[&str] = &[
    "dealname",
    "amount",
    "dealstage",
    "pipeline",
    "closedate",
    "dealtype",
    "description",
];

pub(super) const PLATFORM: Platform = Platform {
    id: "hubspot",
    name: "HubSpot",
    category: "crm",
    auth_types: BOTH,
    credential_fields: &[secret("accessToken", "Private app access token")],
    data_types: &[
        object(
            "contacts",
            "Contact records with all properties",
            &[Endpoint::get("/crm/v3/objects/contacts")],
            CONTACTS_MODIFIED,
        )
        .scopes(&["crm.objects.contacts.read"])
        .writes(crm_writes(
            "/crm/v3/objects/contacts",
            "/crm/v3/objects/contacts/{id}",
            CONTACT_PROPERTIES,
            MatchBy::Key("/properties/email"),
            &["crm.objects.contacts.write"],
        )),
        object(
            "companies",
            "Company records",
            &[Endpoint::get("/crm/v3/objects/companies")],
            MODIFIED,
        )
        .scopes(&["crm.objects.companies.read"])
        .writes(crm_writes(
            "/crm/v3/objects/companies",
            "/crm/v3/objects/companies/{id}",
            COMPANY_PROPERTIES,
            MatchBy::Content,
            &["crm.objects.companies.write"],
        )),
        object(
            "deals",
            "Deals and their pipeline stage",
            &[Endpoint::get("/crm/v3/objects/deals")],
            MODIFIED,
        )
        .scopes(&["crm.objects.deals.read"])
        .writes(crm_writes(
            "/crm/v3/objects/deals",
            "/crm/v3/objects/deals/{id}",
            DEAL_PROPERTIES,
            MatchBy::Content,
            &["crm.objects.deals.write"],
        )),
        object(
            "tickets",
            "Service tickets",
            &[Endpoint::get("/crm/v3/objects/tickets")],
            MODIFIED,
        )
        .scopes(&["tickets"]),
        object(
            "products",
            "Product library",
            &[Endpoint::get("/crm/v3/objects/products")],
            MODIFIED,
        )
        .scopes(&["e-commerce"]),
        object(
            "line_items",
            "Line items of deals and quotes",
            &[Endpoint::get("/crm/v3/objects/line_items")],
            MODIFIED,
        )
        .scopes(&["crm.objects.line_items.read"]),
        object(
            "quotes",
            "Sales quotes",
            &[Endpoint::get("/crm/v3/objects/quotes")],
            MODIFIED,
        )
        .scopes(&["crm.objects.quotes.read"]),
        DataType::new(
            "owners",
            "Users who own CRM records",
            Listing {
                query: &[("archived", "false")],
                ..paged(&[Endpoint::get("/crm/v3/owners")])
            },
        )
        .scopes(&["crm.objects.owners.read"]),
        DataType::new(
            "pipelines",
            "Deal and ticket pipelines with their stages",
            // One answer per object type; the records do not say which, so each is tagged.
            Listing::new(
                &[
                    Endpoint::get("/crm/v3/pipelines/deals").tagged("objectType", "deals"),
                    Endpoint::get("/crm/v3/pipelines/tickets").tagged("objectType", "tickets"),
                ],
                "/results",
                Pagination::Single,
                PageSize::NONE,
            ),
        )
        .scopes(&["crm.objects.deals.read", "tickets"]),
        object(
            "notes",
            "Notes logged on records",
            &[Endpoint::get("/crm/v3/objects/notes")],
            MODIFIED,
        )
        .scopes(&["crm.objects.contacts.read"]),
        object(
            "calls",
            "Logged calls",
            &[Endpoint::get("/crm/v3/objects/calls")],
            MODIFIED,
        )
        .scopes(&["crm.objects.contacts.read"]),
        object(
            "emails",
            "Logged e-mails",
            &[Endpoint::get("/crm/v3/objects/emails")],
            MODIFIED,
        )
        .scopes(&["sales-email-read"]),
        object(
            "meetings",
            "Logged meetings",
            &[Endpoint::get("/crm/v3/objects/meetings")],
            MODIFIED,
        )
        .scopes(&["crm.objects.contacts.read"]),
        object(
            "tasks",
            "Tasks",
            &[Endpoint::get("/crm/v3/objects/tasks")],
            MODIFIED,
        )
        .scopes(&["crm.objects.contacts.read"]),
    ],
    // Every app needs `oauth`; each data type asks for its own read scope (HubSpot's scope reference:
    // https://developers.hubspot.com/docs/api/working-with-oauth#scopes), so an authorization asks only for
    // what the customer means to back up.
    oauth_scopes: &["oauth"],
    api_base_url: "https://api.hubapi.com",
    api_key_auth: Some(ApiAuth::Bearer {
        token_field: "accessToken",
    }),
    api_headers: &[],
    url_params: &[],
    identity: Identity::get("/account-info/v3/details", &["/portalId"], &["/portalId"]),
    oauth: Some(Oauth::new(
        "https://app.hubspot.com/oauth/authorize",
        "https://api.hubapi.com/oauth/v1/token",
    )),
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/message"],
    // A token that is not valid, expired or revoked: 401 with `category` `INVALID_AUTHENTICATION` or
    // `EXPIRED_AUTHENTICATION` (API reference, "Error handling"); missing scopes are a 403 instead.
    credentials_rejected: REJECTED_401,
};

/// Contacts name their modification property differently from every other object.
const CONTACTS_MODIFIED: &str = "lastmodifieddate";
const MODIFIED: &str = "hs_lastmodifieddate";

/// A CRM v3 list: `{"results":[…],"paging":{"next":{"after":…}}}`, 100 per page.
const fn paged(endpoints: &'static [Endpoint]) -> Listing {
    Listing::new(
        endpoints,
        "/results",
        Pagination::CursorParam {
            param: "after",
            cursor: "/paging/next/after",
        },
        PageSize::param("limit", 100),
    )
}

/// A CRM object, incremental through the search API by its modification property. HubSpot's search reads an
/// index updated asynchronously ("it may take a few moments for newly created or updated CRM objects to
/// appear in search results", CRM search guide, Limitations); imports and workflows updating thousands of
/// records take longer than moments, so the lookback is 10 minutes.
const fn object(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    modified: &'static str,
) -> DataType {
    DataType::new(
        name,
        description,
        Listing {
            query: &[("archived", "false")],
            incremental: Some(IncrementalFetch {
                cursor_field: modified,
                filter: TimeFilter::Search {
                    property: modified,
                    id_property: "hs_object_id",
                    page_size: 200,
                },
                // The property itself where the answer has it: the value the search filters and sorts on.
                record_time: TimeField {
                    field: "updatedAt",
                    nested: Some(("properties", modified)),
                    format: TimeFormat::Rfc3339,
                },
                lookback: Duration::from_secs(10 * 60),
            }),
            ..paged(endpoints)
        },
    )
}
