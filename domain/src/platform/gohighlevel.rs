//! HighLevel (GoHighLevel) API v2 (https://highlevel.stoplight.io/docs/integrations/; the OpenAPI documents
//! behind it: https://github.com/GoHighLevel/highlevel-api-docs, `apps/*.json`).
//!
//! - Authentication: `Authorization: Bearer <token>`, a private integration token (`pit-…`) or an OAuth
//!   access token, plus the mandatory `Version: 2021-07-28` header. Everything belongs to one sub-account
//!   (location): its id is a credential field for tokens, and the OAuth token answer names it.
//! - Lists vary by endpoint, each read from its own documentation: `locationId` as a query parameter (or
//!   `location_id`, or `altId` + `altType=location`), or in the path (`/locations/{locationId}/tags`);
//!   contacts and opportunities page by `startAfterId` + `startAfter` read from `meta` (`limit` ≤ 100);
//!   forms and surveys by `skip`/`limit` (≤ 50) with `total`; invoices and products by `offset`/`limit`;
//!   form submissions by `page` (`meta.nextPage`); conversations by `startAfterDate`, "the sort value of
//!   the last document"; messages per conversation by `lastMessageId` while `nextPage`; the rest answer
//!   whole. No list filters on a change time, so every run lists everything.
//! - Errors: `{"statusCode":400,"message":"…"}` (422: `"message":["…"]`). Rate limits
//!   (https://github.com/GoHighLevel/highlevel-api-docs/blob/main/docs/oauth/Authorization.md): 100
//!   requests per 10 seconds and 200,000 a day per app and sub-account.

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
        DataType::new(
            "contacts",
            "Contacts with custom fields",
            // `GET /contacts/` (documented as deprecated in favour of `POST /contacts/search`, and still
            // served): 100 a page, keyset by `startAfterId` + `startAfter` from `meta`.
            Listing {
                query: &[("locationId", "{locationId}")],
                ..keyset(&[Endpoint::get("/contacts/")], "/contacts")
            },
        )
        .scopes(&["contacts.readonly"]),
        DataType::new(
            "opportunities",
            "Opportunities",
            Listing {
                // This endpoint spells it `location_id`; `status=all` lists won, lost and abandoned ones too.
                query: &[("location_id", "{locationId}"), ("status", "all")],
                ..keyset(&[Endpoint::get("/opportunities/search")], "/opportunities")
            },
        )
        .scopes(&["opportunities.readonly"]),
        whole(
            "pipelines",
            "Opportunity pipelines and stages",
            &[Endpoint::get("/opportunities/pipelines")],
            "/pipelines",
            &[("locationId", "{locationId}")],
        )
        .scopes(&["opportunities.readonly"]),
        whole(
            "calendars",
            "Calendars",
            &[Endpoint::get("/calendars/")],
            "/calendars",
            &[("locationId", "{locationId}")],
        )
        .scopes(&["calendars.readonly"]),
        DataType::new(
            "appointments",
            "Calendar events and appointments",
            // Per calendar (the endpoint wants a calendar, user or group, and a time window in epoch
            // milliseconds): all of time up to 2100. Each event names its `calendarId`.
            Listing {
                query: &[
                    ("locationId", "{locationId}"),
                    ("calendarId", "{calendarId}"),
                    ("startTime", "0"),
                    ("endTime", "4102444800000"),
                ],
                per_parent: Some(PerParent {
                    data_type: "calendars",
                    placeholder: "calendarId",
                    tag: None,
                }),
                ..single(&[Endpoint::get("/calendars/events")], "/events")
            },
        )
        .scopes(&["calendars.readonly", "calendars/events.readonly"]),
        DataType::new(
            "conversations",
            "Conversations with contacts",
            // Oldest last message first: a conversation that gets a message meanwhile moves to the end, where
            // the listing still finds it.
            Listing {
                query: &[
                    ("locationId", "{locationId}"),
                    ("sort", "asc"),
                    ("sortBy", "last_message_date"),
                ],
                ..Listing::new(
                    &[Endpoint::get("/conversations/search")],
                    "/conversations",
                    Pagination::AfterLastValue {
                        param: "startAfterDate",
                        field: "lastMessageDate",
                    },
                    PageSize::param("limit", 100),
                )
            },
        )
        .scopes(&["conversations.readonly"]),
        DataType::new(
            "messages",
            "Messages of conversations (SMS, e-mail, chat)",
            // Per conversation: `{"lastMessageId":…,"nextPage":…,"messages":[…]}`, the next page after the
            // last message's id while `nextPage`. Each message names its `conversationId`.
            Listing {
                per_parent: Some(PerParent {
                    data_type: "conversations",
                    placeholder: "conversationId",
                    tag: None,
                }),
                ..Listing::new(
                    &[Endpoint::get("/conversations/{conversationId}/messages")],
                    "/messages",
                    Pagination::AfterLastId {
                        param: "lastMessageId",
                        more: "/nextPage",
                    },
                    PageSize::param("limit", 100),
                )
            },
        )
        .scopes(&["conversations.readonly", "conversations/message.readonly"]),
        whole(
            "users",
            "Users of the sub-account",
            &[Endpoint::get("/users/")],
            "/users",
            &[("locationId", "{locationId}")],
        )
        .scopes(&["users.readonly"]),
        whole(
            "tags",
            "Contact tags",
            &[Endpoint::get("/locations/{locationId}/tags")],
            "/tags",
            &[],
        )
        .scopes(&["locations/tags.readonly"]),
        whole(
            "custom_fields",
            "Custom field definitions",
            &[Endpoint::get("/locations/{locationId}/customFields")],
            "/customFields",
            // Contacts' and opportunities' fields alike.
            &[("model", "all")],
        )
        .scopes(&["locations/customFields.readonly"]),
        skip_paged("forms", "Forms", &[Endpoint::get("/forms/")], "/forms")
            .scopes(&["forms.readonly"]),
        DataType::new(
            "form_submissions",
            "Form submissions",
            Listing {
                // Without `startAt` only the last month's submissions are listed.
                query: &[("locationId", "{locationId}"), ("startAt", "2000-01-01")],
                ..Listing::new(
                    &[Endpoint::get("/forms/submissions")],
                    "/submissions",
                    Pagination::CursorParam {
                        param: "page",
                        cursor: "/meta/nextPage",
                    },
                    PageSize::param("limit", 100),
                )
            },
        )
        .scopes(&["forms.readonly"]),
        skip_paged(
            "surveys",
            "Surveys",
            &[Endpoint::get("/surveys/")],
            "/surveys",
        )
        .scopes(&["surveys.readonly"]),
        DataType::new(
            "invoices",
            "Invoices",
            Listing {
                query: &[("altId", "{locationId}"), ("altType", "location")],
                id_field: "_id",
                ..offset_paged(&[Endpoint::get("/invoices/")], "/invoices", "/total")
            },
        )
        .scopes(&["invoices.readonly"]),
        DataType::new(
            "products",
            "Products",
            Listing {
                query: &[("locationId", "{locationId}")],
                id_field: "_id",
                // `"total":[{"total":<n>}]`.
                ..offset_paged(
                    &[Endpoint::get("/products/")],
                    "/products",
                    "/total/0/total",
                )
            },
        )
        .scopes(&["products.readonly"]),
        whole(
            "workflows",
            "Workflows (names and status)",
            &[Endpoint::get("/workflows/")],
            "/workflows",
            &[("locationId", "{locationId}")],
        )
        .scopes(&["workflows.readonly"]),
        whole(
            "campaigns",
            "Campaigns",
            &[Endpoint::get("/campaigns/")],
            "/campaigns",
            &[("locationId", "{locationId}")],
        )
        .scopes(&["campaigns.readonly"]),
    ],
    // The "who am I" call reads the sub-account; each data type asks for its own read scope.
    oauth_scopes: &["locations.readonly"],
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
            "https://marketplace.gohighlevel.com/v2/oauth/chooselocation",
            "https://services.leadconnectorhq.com/oauth/token",
        )
    }),
    // 100 requests in any 10 seconds: a budget of 8/s with a burst of 10 sends at most 90, leaving room for
    // the connection test. (The daily 200,000 is not budgeted: a run that reaches it gets 429s and fails as
    // rate limited, to be retried.)
    rate: DefaultRate {
        per_second: 8.0,
        burst: 10,
        limited_when: &[],
    },
    error_messages: &["/message", "/message/0", "/error"],
    // 401 `{"statusCode":401,"message":"Invalid JWT"}` for a token that is not valid; a 403 is a token not
    // authorized for the location or scope, which the token's owner may still fix.
    credentials_rejected: REJECTED_401,
};

/// Keyset by `startAfterId` + `startAfter` (the last record's id and sort time, from `meta`), 100 a page.
const fn keyset(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::CursorParams {
            params: &[
                ("startAfterId", "/meta/startAfterId"),
                ("startAfter", "/meta/startAfter"),
            ],
        },
        PageSize::param("limit", 100),
    )
}

/// One answer holds the whole list.
const fn single(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(endpoints, records, Pagination::Single, PageSize::NONE)
}

/// A data type answered whole by one request with these query parameters.
const fn whole(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    records: &'static str,
    query: &'static [(&'static str, &'static str)],
) -> DataType {
    DataType::new(
        name,
        description,
        Listing {
            query,
            ..single(endpoints, records)
        },
    )
}

/// Offset paging with `offset`/`limit` (100 a page) and the total at `total`, pages overlapping by 5.
const fn offset_paged(
    endpoints: &'static [Endpoint],
    records: &'static str,
    total: &'static str,
) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::Offset {
            offset: OffsetParam::Param("offset"),
            overlap: 5,
            total: Some(total),
            used_limit: None,
        },
        PageSize::param("limit", 100),
    )
}

/// Forms and surveys: `skip`/`limit` with `limit` ≤ 50 and the `total`, pages overlapping by 5.
const fn skip_paged(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    records: &'static str,
) -> DataType {
    DataType::new(
        name,
        description,
        Listing {
            query: &[("locationId", "{locationId}")],
            ..Listing::new(
                endpoints,
                records,
                Pagination::Offset {
                    offset: OffsetParam::Param("skip"),
                    overlap: 5,
                    total: Some("/total"),
                    used_limit: None,
                },
                PageSize::param("limit", 50),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_data_types_and_children_need_their_parents() {
        assert_eq!(PLATFORM.scopes_for(Some(&[])), ["locations.readonly"]);
        assert_eq!(
            PLATFORM.scopes_for(Some(&["messages"])),
            [
                "locations.readonly",
                "conversations.readonly",
                "conversations/message.readonly"
            ]
        );
        assert_eq!(
            PLATFORM.scopes_for(Some(&["pipelines", "opportunities"])),
            ["locations.readonly", "opportunities.readonly"]
        );
        let all = PLATFORM.scopes_for(None);
        assert!(all.contains(&"calendars/events.readonly"));
        assert!(
            all.iter().all(|s| s.ends_with(".readonly")),
            "read-only: {all:?}"
        );
    }
}
