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
//! - Writes (restore, issue 13 §5): audience members and their tags only, see [`MEMBER_WRITES`].

use super::writes::{
    FieldIs, FieldRename, ParamValue, RecordParam, RecordWrites, SetBody, SetField, Unset,
    WriteBody, WriteMethod,
};
use super::*;

/// How a restore writes an audience member back (Marketing API 3.0, List Members:
/// <https://mailchimp.com/developer/marketing/api/list-members/>).
///
/// - **Create** (a member missing from its audience, or archived since the snapshot): `PUT
///   /lists/{list_id}/members/{subscriber_hash}` "Add or update list member", an upsert keyed by the
///   subscriber hash (the MD5 of the lower-case e-mail address, computed from the backed-up
///   `email_address`), so doing it twice adds one member. The body is `email_address`, `status_if_new`,
///   `email_type`, `merge_fields`, `interests`, `language`, `vip` and `marketing_permissions` as backed up;
///   `?skip_merge_validation=true` takes the merge fields as they were even where a field has become required
///   since. `list_id` is the member's own field (a member is a child of its audience, which is why its key
///   in the index and the report is `<list_id>/<id>`). Tags are not part of this call: see below. Nor are
///   the opt-in IP addresses and times, which are Mailchimp's to record.
/// - **Update** (a member present but changed, mode `overwrite`): `PATCH
///   /lists/{list_id}/members/{id}` "Update list member" with the changed ones of `email_type`,
///   `merge_fields`, `interests`, `language` and `vip` (Mailchimp merges `merge_fields` by key).
/// - **Tags** ([`MEMBER_TAGS`], a follow-up write of the set-valued field `tags`): a backed-up member lists
///   its tags as `tags: [{id, name}]`; they are put back by name after the create or the update with `POST
///   /lists/{list_id}/members/{subscriber_hash}/tags` "Add or remove member tags"
///   (<https://mailchimp.com/developer/marketing/api/list-member-tags/add-or-remove-member-tags/>), body
///   `{"tags": [{"name", "status": "active" | "inactive"}]}`, answered 204 with no body; a tag name the
///   audience does not have is created when active, and tags not named are left as they are. After a
///   create every backed-up tag is sent active. A present member whose tags differ from the snapshot's is an
///   update (mode `overwrite`; mode `missing` leaves it alone), made of the tags call alone when nothing else
///   differs: the snapshot's tags active, the member's tags the snapshot lacks inactive. Tag ids are
///   Mailchimp's (a tag is a static segment of the audience) and are not compared. The call carries
///   `"is_syncing": true` ("automations based on the tags in the request will not fire"): a tag put back is
///   what the member already had, not a new tagging, and a tag-triggered automation (a welcome series) must
///   not e-mail people because of a restore.
/// - **Status: a restore never subscribes anyone, nor unsubscribes them.** The backed-up `status` is sent
///   only as `status_if_new`, which Mailchimp applies only "if the email address is not already present on
///   the list"; `status` itself is never sent, and a member whose status alone differs from the snapshot is
///   skipped, saying so. So a member who unsubscribed (or bounced, `cleaned`) since the backup stays so, as
///   consent law and Mailchimp's compliance states require (Mailchimp itself refuses to subscribe such a
///   member: 400 "Member In Compliance State", https://mailchimp.com/developer/marketing/docs/errors/), and
///   a member re-added after being archived comes back with the status the backup held, `unsubscribed`
///   and `cleaned` included: never as `subscribed` unless they were. (A `pending` member re-added is sent
///   Mailchimp's confirmation e-mail again, as any re-added pending member is.)
/// - **Archived and forgotten members.** `DELETE` archives a member: the listing may still show it with
///   status `archived`, which counts as missing, and the create's `PUT` brings it back. A member deleted
///   permanently (`…/actions/delete-permanent`, "forgotten") cannot be added again through the API:
///   Mailchimp answers 400 "Forgotten Email Not Subscribed", and the restore reports that member as
///   `cannot_restore` with Mailchimp's reason and goes on.
/// - API key connections only: no write scopes.
pub const MEMBER_WRITES: RecordWrites = RecordWrites {
    create: "/lists/{list_id}/members/{subscriber_hash}?skip_merge_validation=true",
    update: Some("/lists/{list_id}/members/{id}?skip_merge_validation=true"),
    create_fields: &[
        "email_address",
        "status",
        "email_type",
        "merge_fields",
        "interests",
        "language",
        "vip",
        "marketing_permissions",
    ],
    update_fields: &["email_type", "merge_fields", "interests", "language", "vip"],
    body: WriteBody::Json {
        envelope: None,
        unset: Unset::Null,
    },
    create_method: WriteMethod::Put,
    update_method: WriteMethod::Patch,
    renames: &[FieldRename {
        field: "status",
        to: &["status_if_new"],
    }],
    // The subscriber hash is the member's id in every audience it is in; the upsert keeps a create single.
    idempotency_key: false,
    record_params: &[
        RecordParam {
            placeholder: "list_id",
            field: "/list_id",
            value: ParamValue::AsIs,
        },
        RecordParam {
            placeholder: "subscriber_hash",
            field: "/email_address",
            value: ParamValue::Md5OfLowercase,
        },
    ],
    removed_when: &[FieldIs {
        field: "/status",
        value: "archived",
    }],
    kept_fields: &["status"],
    set_fields: &[MEMBER_TAGS],
    ..RecordWrites::BASE
};

/// A member's tags, put back by name after its create or update (see [`MEMBER_WRITES`]; Marketing API 3.0,
/// List Member Tags: <https://mailchimp.com/developer/marketing/api/list-member-tags/>).
pub const MEMBER_TAGS: SetField = SetField {
    field: "tags",
    name: "/name",
    path: "/lists/{list_id}/members/{subscriber_hash}/tags",
    method: WriteMethod::Post,
    body: SetBody::Statuses {
        list: "tags",
        name: "name",
        status: "status",
        active: "active",
        inactive: "inactive",
        flags: &["is_syncing"],
    },
};

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
            "Members of each audience with merge fields, tags and status",
            Listing {
                incremental: Some(LAST_CHANGED),
                ..per_audience(&[Endpoint::get("/lists/{list_id}/members")], "/members")
            },
        )
        .writes(MEMBER_WRITES),
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
            used_limit: None,
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
