//! Zendesk Support API v2 (https://developer.zendesk.com/api-reference/ticketing/introduction/) and the Help
//! Center API (https://developer.zendesk.com/api-reference/help_center/help-center-api/).
//!
//! - Authentication: HTTP Basic `{email}/token:{api_token}` on the account's own host
//!   `https://{subdomain}.zendesk.com`, or OAuth 2.0
//!   (https://developer.zendesk.com/api-reference/ticketing/oauth/grant_type_tokens/, "Using OAuth
//!   authentication with your application"): the authorization code grant with PKCE, authorized at
//!   `https://{subdomain}.zendesk.com/oauth/authorizations/new`, exchanged at
//!   `https://{subdomain}.zendesk.com/oauth/tokens` (client id and secret in the body), scope `read`, then
//!   `Authorization: Bearer <access token>`; access tokens expire and are renewed with their refresh token.
//!   Each account is its own authorization server: the flow needs the subdomain before it starts, as
//!   Shopify's needs the shop.
//! - Lists (https://developer.zendesk.com/api-reference/introduction/pagination/): cursor pagination with
//!   `page[size]` ≤ 100 → `{"<resource>":[…],"meta":{"has_more":…,"after_cursor":…},"links":{"next":…}}`;
//!   `links.next` is followed while `meta.has_more` is true.
//! - Changes (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/):
//!   the cursor-based incremental exports of tickets and users, `start_time=<Unix seconds>` (all records
//!   changed since; `0` for all) then `after_url` until `end_of_stream`, up to 1,000 records a page, 10
//!   requests a minute. They are also how tickets and users are listed whole: unlike `GET /tickets.json`
//!   they include archived tickets (closed for 120 days), which a backup wants most.
//! - Errors: `{"error":"RecordNotFound","description":"Not found"}`, `{"error":{"title":…,"message":…}}`, or
//!   `{"error":"Couldn't authenticate you"}`. Rate limits
//!   (https://developer.zendesk.com/api-reference/introduction/rate-limits/): per account and minute, 200
//!   requests (Team), 400 (Growth, Professional), 700 (Enterprise), 2,500 (Enterprise Plus or the High Volume
//!   add-on); the Help Center API has its own; 429 with `Retry-After` (seconds) past them.

use super::writes::{FieldRename, MatchBy, RecordWrites, Unset, WriteBody};
use super::*;

/// Tickets are restored as new tickets (Tickets API, "Create Ticket",
/// <https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#create-ticket>): `POST
/// /tickets.json` with `{"ticket": {…}}`, answered 201 `{"ticket": {…, "id": <number>}}`. A ticket's
/// `description` is its first comment, so it is sent as `comment.body` (a ticket without one is a 422
/// `RecordInvalid`). Never updated: a ticket's history is its comments and audits, which an update cannot
/// put back, so an existing ticket that changed cannot be restored (the plan says why). The status is not
/// sent (a new ticket cannot be created closed); the requester stays the backed-up one. Zendesk has no
/// idempotency key: a ticket re-created is recognised by everything a create sends.
const TICKET_WRITES: RecordWrites = RecordWrites {
    create: "/tickets.json",
    update: None,
    create_fields: &[
        "subject",
        "description",
        "priority",
        "type",
        "tags",
        "requester_id",
    ],
    update_fields: &["subject", "description", "priority", "type", "tags"],
    body: WriteBody::Json {
        envelope: Some("ticket"),
        unset: Unset::Null,
    },
    new_id: "/ticket/id",
    renames: &[FieldRename {
        field: "description",
        to: &["comment", "body"],
    }],
    matched_by: MatchBy::Content,
    // OAuth scopes (https://developer.zendesk.com/api-reference/ticketing/oauth/oauth_tokens/, "Scopes"): a
    // resource's own `tickets:write` rather than the account-wide `write`.
    scopes: &["tickets:write"],
    idempotency_key: false,
    ..RecordWrites::BASE
};

pub(super) const PLATFORM: Platform = Platform {
    id: "zendesk",
    name: "Zendesk",
    category: "support",
    auth_types: BOTH,
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
        DataType::new(
            "tickets",
            "Tickets, archived ones included",
            Listing {
                // Deleted tickets are in the trash; their comments can no longer be listed.
                query: &[("start_time", "0"), ("exclude_deleted", "true")],
                // The export compares `start_time` with each ticket's `generated_timestamp` (Unix seconds),
                // which every change moves, system updates included.
                incremental: Some(since("generated_timestamp", TimeFormat::UnixSeconds)),
                ..export(
                    &[Endpoint::get("/incremental/tickets/cursor.json")],
                    "/tickets",
                )
            },
        )
        .writes(TICKET_WRITES),
        DataType::new(
            "ticket_comments",
            "Public and private comments of tickets",
            // Per ticket; a comment does not say whose it is, so each gets its ticket's `ticket_id`.
            Listing {
                per_parent: Some(PerParent {
                    data_type: "tickets",
                    placeholder: "ticket_id",
                    tag: Some("ticket_id"),
                }),
                ..cursor_paged(
                    &[Endpoint::get("/tickets/{ticket_id}/comments.json")],
                    "/comments",
                )
            },
        ),
        DataType::new(
            "users",
            "End users, agents and admins",
            Listing {
                query: &[("start_time", "0")],
                incremental: Some(since("updated_at", TimeFormat::Rfc3339)),
                ..export(&[Endpoint::get("/incremental/users/cursor.json")], "/users")
            },
        ),
        // Organizations have only a time-based export, whose pages repeat the records sharing a page's last
        // second (duplicates in a backup): they are listed whole, by cursor.
        list(
            "organizations",
            "Organizations",
            &[Endpoint::get("/organizations.json")],
            "/organizations",
        ),
        list(
            "groups",
            "Agent groups",
            &[Endpoint::get("/groups.json")],
            "/groups",
        ),
        list(
            "ticket_fields",
            "Ticket field definitions",
            &[Endpoint::get("/ticket_fields.json")],
            "/ticket_fields",
        ),
        list(
            "macros",
            "Macros",
            &[Endpoint::get("/macros.json")],
            "/macros",
        ),
        list("views", "Views", &[Endpoint::get("/views.json")], "/views"),
        list(
            "triggers",
            "Triggers",
            &[Endpoint::get("/triggers.json")],
            "/triggers",
        ),
        list(
            "automations",
            "Automations",
            &[Endpoint::get("/automations.json")],
            "/automations",
        ),
        list(
            "satisfaction_ratings",
            "Customer satisfaction ratings",
            &[Endpoint::get("/satisfaction_ratings.json")],
            "/satisfaction_ratings",
        ),
        list(
            "help_center_articles",
            "Help Center articles",
            &[Endpoint::get("/help_center/articles.json")],
            "/articles",
        ),
    ],
    // `read`: every GET endpoint (a backup reads only).
    oauth_scopes: &["read"],
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
    oauth: Some(Oauth {
        account_host: Some(AccountHost {
            field: "subdomain",
            shape: FieldShape::HostLabel,
            example: "the subdomain of `<subdomain>.zendesk.com`",
        }),
        ..Oauth::new(
            "https://{subdomain}.zendesk.com/oauth/authorizations/new",
            "https://{subdomain}.zendesk.com/oauth/tokens",
        )
    }),
    // Team, the smallest plan, allows 200 requests a minute: 3/s with a burst of 10 stays under it in any
    // minute. The incremental exports' own 10 a minute are waited out on their 429's `Retry-After`.
    rate: DefaultRate {
        per_second: 3.0,
        burst: 10,
        limited_when: &[],
    },
    error_messages: &["/error/message", "/description", "/error/title", "/error"],
    // 401 `{"error":"Couldn't authenticate you"}` for a wrong e-mail, token or OAuth token (API reference,
    // "Security and authentication"). `/users/me` answers an anonymous caller 200 instead (the identity
    // call's `Anonymous`).
    credentials_rejected: REJECTED_401,
};

/// Cursor pagination: `links.next` while `meta.has_more` (`links.next` is sent on the last page too).
const CURSOR: Pagination = Pagination::NextUrl {
    url: "/links/next",
    more: Some("/meta/has_more"),
};

/// A cursor-paginated list: 100 per page (the documented maximum of most endpoints).
const fn cursor_paged(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        CURSOR,
        PageSize::param("page[size]", 100),
    )
}

/// A data type listed whole by cursor on every run.
const fn list(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    records: &'static str,
) -> DataType {
    DataType::new(name, description, cursor_paged(endpoints, records))
}

/// A cursor-based incremental export: 1,000 records a page (`per_page`, the maximum), `after_url` until
/// `end_of_stream`. The `start_time=0` of a full run is in the listing's query; an incremental run replaces
/// it with its lower bound.
const fn export(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::NextUrlUntil {
            url: "/after_url",
            end: "/end_of_stream",
        },
        PageSize::param("per_page", 1000),
    )
}

/// `start_time` (Unix seconds) against the records' `field`. The exports leave out what changed in the
/// minute before each request ("to ensure the accuracy of the data") and refuse a `start_time` within it; two
/// minutes of lookback keep every request's start well before it, and cover clock differences between
/// Zendesk's servers.
const fn since(field: &'static str, format: TimeFormat) -> IncrementalFetch {
    IncrementalFetch {
        cursor_field: field,
        filter: TimeFilter::QueryParam {
            param: "start_time",
            format: TimeFormat::UnixSeconds,
        },
        record_time: TimeField {
            field,
            nested: None,
            format,
        },
        lookback: Duration::from_secs(2 * 60),
    }
}
