//! Mailchimp Marketing API 3.0 (https://mailchimp.com/developer/marketing/api/).
//!
//! - Authentication: HTTP Basic with any user name and the API key as password; the key ends with the data
//!   centre its account lives in (`<key>-us21` → `https://us21.api.mailchimp.com/3.0`). The API root
//!   (`GET /3.0/`) names the account.
//! - Collections (https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination):
//!   `count` (default 10, at most 1000) and `offset`; the answer holds the records under the collection's
//!   own name and `total_items`. The data of an audience lives under it: `/lists/{list_id}/members`,
//!   `/segments`, `/merge-fields`, `/interest-categories`, listed here once per audience (per parent).
//! - Changes: members take `since_last_changed` (ISO 8601) and say when they changed in `last_changed`. The
//!   other collections only filter on creation or send times (campaigns `since_create_time` /
//!   `since_send_time`, reports `since_send_time`), which miss edits and new report figures: they are
//!   listed whole.
//! - Errors (https://mailchimp.com/developer/marketing/docs/errors/): RFC 7807 problem details,
//!   `application/problem+json`, `{"type","title","status","detail","instance"}`.
//! - Limits (https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits): at most 10
//!   simultaneous connections per API key, answered 429 beyond; no per-second limit, and requests time out
//!   after 120 s.

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
        DataType::new(
            "audiences",
            "Audiences (lists) and their settings",
            list(&[Endpoint::get("/lists")], "/lists"),
        ),
        DataType::new(
            "audience_members",
            "Members of each audience with merge fields and status",
            Listing {
                incremental: Some(LAST_CHANGED),
                ..per_audience(&[Endpoint::get("/lists/{list_id}/members")], "/members")
            },
        ),
        DataType::new(
            "segments",
            "Segments and tags of audiences",
            per_audience(&[Endpoint::get("/lists/{list_id}/segments")], "/segments"),
        ),
        DataType::new(
            "merge_fields",
            "Merge field definitions of audiences",
            Listing {
                // Merge fields are numbered per audience (`merge_id`); they have no `id`.
                id_field: "merge_id",
                ..per_audience(
                    &[Endpoint::get("/lists/{list_id}/merge-fields")],
                    "/merge_fields",
                )
            },
        ),
        DataType::new(
            "interest_categories",
            "Interest categories (groups) of audiences",
            per_audience(
                &[Endpoint::get("/lists/{list_id}/interest-categories")],
                "/categories",
            ),
        ),
        // The list answers each campaign's settings, recipients, tracking and report summary; its content
        // (`/campaigns/{id}/content`) is one more request per campaign and is not listed.
        DataType::new(
            "campaigns",
            "Campaigns with their settings, recipients and report summary",
            list(&[Endpoint::get("/campaigns")], "/campaigns"),
        ),
        DataType::new(
            "campaign_reports",
            "Campaign reports",
            list(&[Endpoint::get("/reports")], "/reports"),
        ),
        DataType::new(
            "templates",
            "E-mail templates",
            list(&[Endpoint::get("/templates")], "/templates"),
        ),
        DataType::new(
            "automations",
            "Classic automations",
            list(&[Endpoint::get("/automations")], "/automations"),
        ),
        DataType::new(
            "landing_pages",
            "Landing pages",
            list(&[Endpoint::get("/landing-pages")], "/landing_pages"),
        ),
        DataType::new(
            "ecommerce_stores",
            "Connected e-commerce stores",
            list(&[Endpoint::get("/ecommerce/stores")], "/stores"),
        ),
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
    // Mailchimp limits simultaneous connections (10 per key), not requests per second. Ten requests a
    // second keeps fewer than ten in flight as long as an answer takes under a second, which a page of
    // 1,000 members does; a slower answer makes the extra request wait for a 429 and its retry rather
    // than fail.
    rate: DefaultRate::per_second(10.0),
    error_messages: &["/detail", "/title"],
    // 401 problem JSON `{"title":"API Key Invalid"}` (or "API Key Missing") (Marketing API, "Errors").
    credentials_rejected: REJECTED_401,
};

/// Pages overlap by this many records: up to 19 records archived or deleted before the position between two
/// requests cost nothing; 2% more records read.
const OVERLAP: u32 = 20;

/// A Mailchimp collection: 1,000 per page by offset, `total_items` the total.
const fn list(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::Offset {
            offset: OffsetParam::Param("offset"),
            overlap: OVERLAP,
            total: Some("/total_items"),
        },
        PageSize::param("count", 1000),
    )
}

/// A collection of each audience, listed for every audience in turn. Its records carry `list_id` themselves,
/// so they are not tagged.
const fn per_audience(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing {
        per_parent: Some(PerParent {
            data_type: "audiences",
            placeholder: "list_id",
            tag: None,
        }),
        ..list(endpoints, records)
    }
}

/// Members by `since_last_changed`, against their `last_changed`. Mailchimp documents no delay between a
/// change and its filter; five minutes of lookback cover imports and batch operations that stamp a member
/// before they finish, and clock differences between Mailchimp's servers. Each audience is asked the same
/// lower bound; the cursor knows members as `<list_id>/<member id>` (a member's id is the hash of its
/// e-mail address, the same in every audience).
const LAST_CHANGED: IncrementalFetch = IncrementalFetch {
    cursor_field: "last_changed",
    filter: TimeFilter::QueryParam {
        param: "since_last_changed",
        format: TimeFormat::Rfc3339,
    },
    record_time: TimeField {
        field: "last_changed",
        nested: None,
        format: TimeFormat::Rfc3339,
    },
    lookback: Duration::from_secs(5 * 60),
};
