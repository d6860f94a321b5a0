//! Which endpoint serves each (platform, data type), where its records are, how it pages and whether it can be
//! fetched incrementally: data, in the style of the platform catalog, read by the generic fetch loop.
//!
//! Paths are relative to the platform's API base (the catalog's `api_base_url`, or its
//! `LISTBACKUP_PLATFORM_<ID>_API_URL` override): Stripe `…/v1`, Keap `…/crm/rest/v1`, HubSpot the host root.

use std::time::Duration;

use super::body::{TimeField, TimeFormat};

/// How a list endpoint pages. Every strategy ends: a cursor, id or page that comes back a second time, or
/// far more pages than the list announced, fails the data type (see `paging::LoopGuard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// Stripe: `limit` + `starting_after=<id of the last record>`, while the body says `has_more`.
    /// Keyset pagination by id: records created or deleted meanwhile never shift a page.
    StartingAfter,
    /// HubSpot CRM v3: `limit` + `after=<paging.next.after>`; the last page has no `paging.next`.
    NextAfter,
    /// `limit` + `offset`, each page requested `overlap` records before the end of the previous one: the
    /// previous page's last records are found again in it and everything up to them is dropped, so records
    /// deleted or added before the position meanwhile neither skip nor repeat a record. When none of the
    /// previous page's records are found (more than `overlap` deletions shifted the list), the pager steps
    /// back a bounded number of pages; if it still cannot find its place, the data type fails as retryable
    /// rather than skip records (see `paging::OffsetWithOverlap`).
    ///
    /// Keap REST v1 today (Mailchimp and ActiveCampaign next). Keap always sends a `next` URL, even past the
    /// end, so a page shorter than `limit` is what ends the list (the `next` URL is not followed: it names
    /// Keap's host, and the credentials must not go wherever a response body points).
    OffsetWithOverlap { overlap: u32 },
    /// One request returns the whole list.
    Single,
}

/// How a data type is fetched incrementally: what the request filters on and which record field tells when a
/// record last changed. Only offered where the filter catches every change (creations *and* updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremental {
    /// Stripe objects that never change once created (the event log, balance transactions):
    /// `created[gte]=<unix seconds>` on the list, the record's `created`.
    StripeCreated,
    /// HubSpot CRM objects: `POST <path>/search` filtering `<property> GTE <epoch ms>` sorted ascending by
    /// it, each request starting at the newest change of the page before (keyset paging, so the search API's
    /// 10,000-result cap never applies), and records sharing one instant paged by `hs_object_id` (see
    /// `search`); the record's `properties.<property>`, or its `updatedAt` (the same instant) without it.
    HubSpotSearch { property: &'static str },
    /// Keap: `since=<ISO 8601>` filters on the last update; the record's `last_updated`.
    KeapSince,
}

/// An incremental data type: the filter, and how far before the cursor its requests start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementalFetch {
    pub filter: Incremental,
    /// Requests start this long before the previous run's newest change, so that records which become
    /// visible after their change time are still fetched; what the previous backup holds is dropped by
    /// `(id, change time)`. The records changed in this window are what the cursor remembers, so a longer
    /// window costs cursor size (see `IncrementalCursor`).
    pub lookback: Duration,
}

/// Stripe's event log and balance transactions become visible with a delay after their `created` time.
const STRIPE_LOOKBACK: Duration = Duration::from_secs(5 * 60);
/// HubSpot's search API reads an index updated asynchronously: "It may take a few moments for newly created
/// or updated CRM objects to appear in search results" (CRM search guide, Limitations). Imports and workflows
/// updating thousands of records take longer than "moments" to index, so the window is generous; what it
/// costs is one id per record changed within it.
const HUBSPOT_LOOKBACK: Duration = Duration::from_secs(10 * 60);
/// Keap documents no delay for `since`, which reads the records themselves rather than an index. What
/// remains is a write stamped with `last_updated` before it commits (a long transaction, a retried write)
/// and clock differences between Keap's servers; two minutes covers those at a small cost, as contacts
/// change slowly.
const KEAP_LOOKBACK: Duration = Duration::from_secs(2 * 60);

impl Incremental {
    /// The name stored in the cursor, so a cursor is never applied to a data type it was not made for.
    pub fn field(&self) -> &'static str {
        match self {
            Incremental::StripeCreated => "created",
            Incremental::HubSpotSearch { property } => property,
            Incremental::KeapSince => "last_updated",
        }
    }

    /// Where a record holds its change time, and how it is written.
    pub(crate) fn record_field(&self) -> TimeField {
        let (field, nested, format) = match self {
            Incremental::StripeCreated => ("created", None, TimeFormat::UnixSeconds),
            // The property itself where the answer has it: the value the search filters and sorts on.
            Incremental::HubSpotSearch { property } => (
                "updatedAt",
                Some(("properties", *property)),
                TimeFormat::Text,
            ),
            Incremental::KeapSince => ("last_updated", None, TimeFormat::Text),
        };
        TimeField {
            field,
            nested,
            format,
        }
    }
}

/// One list endpoint of a data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub path: &'static str,
    /// A `(field, value)` added to every record that lacks the field, for data types read from several
    /// endpoints whose records do not say which one they came from (HubSpot pipelines of deals and tickets).
    pub tag: Option<(&'static str, &'static str)>,
}

/// How to fetch one data type of one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataTypeSpec {
    pub platform: &'static str,
    pub data_type: &'static str,
    /// Fetched in order; most data types have one.
    pub endpoints: &'static [Endpoint],
    /// The top-level field of the response body holding the array of records.
    pub records_field: &'static str,
    pub pagination: Pagination,
    /// Records per request (each platform's maximum or the documented sweet spot).
    pub page_size: u32,
    /// Fixed query parameters, e.g. Stripe subscriptions' `status=all` (the default hides cancelled ones).
    pub query: &'static [(&'static str, &'static str)],
    pub incremental: Option<IncrementalFetch>,
}

/// One or more untagged endpoints (a macro: a `const fn` cannot return a slice of its arguments).
macro_rules! endpoints {
    ($($path:literal),+) => { &[$(Endpoint { path: $path, tag: None }),+] };
}

const fn stripe(
    data_type: &'static str,
    endpoints: &'static [Endpoint],
    query: &'static [(&'static str, &'static str)],
    incremental: Option<Incremental>,
) -> DataTypeSpec {
    DataTypeSpec {
        platform: "stripe",
        data_type,
        endpoints,
        records_field: "data",
        pagination: Pagination::StartingAfter,
        page_size: 100,
        query,
        incremental: match incremental {
            Some(filter) => Some(IncrementalFetch {
                filter,
                lookback: STRIPE_LOOKBACK,
            }),
            None => None,
        },
    }
}

/// A HubSpot CRM v3 object (`/crm/v3/objects/<type>`), incremental through the search API.
const fn hubspot_object(
    data_type: &'static str,
    endpoints: &'static [Endpoint],
    modified_property: &'static str,
) -> DataTypeSpec {
    DataTypeSpec {
        platform: "hubspot",
        data_type,
        endpoints,
        records_field: "results",
        pagination: Pagination::NextAfter,
        page_size: 100,
        query: &[("archived", "false")],
        incremental: Some(IncrementalFetch {
            filter: Incremental::HubSpotSearch {
                property: modified_property,
            },
            lookback: HUBSPOT_LOOKBACK,
        }),
    }
}

/// Keap pages overlap by this many records: up to `KEAP_OVERLAP - 1` records deleted before the position
/// between two requests cost nothing; more cost one re-read of a page per `page_size - KEAP_OVERLAP` of them.
/// 5% more records read, and about 5% more requests.
const KEAP_OVERLAP: u32 = 10;

/// A Keap REST v1 list: `{"<data type>": [...], "count": n, "next": url, "previous": url}`.
const fn keap(
    data_type: &'static str,
    endpoints: &'static [Endpoint],
    incremental: Option<Incremental>,
) -> DataTypeSpec {
    DataTypeSpec {
        platform: "keap",
        data_type,
        endpoints,
        records_field: data_type,
        pagination: Pagination::OffsetWithOverlap {
            overlap: KEAP_OVERLAP,
        },
        page_size: 200,
        query: &[],
        incremental: match incremental {
            Some(filter) => Some(IncrementalFetch {
                filter,
                lookback: KEAP_LOOKBACK,
            }),
            None => None,
        },
    }
}

/// HubSpot contacts name their modification property differently from every other object.
const CONTACTS_MODIFIED: &str = "lastmodifieddate";
const MODIFIED: &str = "hs_lastmodifieddate";

pub static SPECS: &[DataTypeSpec] = &[
    // Stripe: every list is newest first, at most 100 per page. Only immutable objects are incremental:
    // a `created` filter would miss updates to a customer or an invoice.
    stripe("customers", endpoints!("/customers"), &[], None),
    stripe("charges", endpoints!("/charges"), &[], None),
    stripe("invoices", endpoints!("/invoices"), &[], None),
    stripe(
        "subscriptions",
        endpoints!("/subscriptions"),
        &[("status", "all")],
        None,
    ),
    stripe("products", endpoints!("/products"), &[], None),
    stripe("prices", endpoints!("/prices"), &[], None),
    stripe("payment_intents", endpoints!("/payment_intents"), &[], None),
    stripe("refunds", endpoints!("/refunds"), &[], None),
    stripe("disputes", endpoints!("/disputes"), &[], None),
    stripe("payouts", endpoints!("/payouts"), &[], None),
    stripe(
        "balance_transactions",
        endpoints!("/balance_transactions"),
        &[],
        Some(Incremental::StripeCreated),
    ),
    stripe(
        "events",
        endpoints!("/events"),
        &[],
        Some(Incremental::StripeCreated),
    ),
    stripe("coupons", endpoints!("/coupons"), &[], None),
    stripe("credit_notes", endpoints!("/credit_notes"), &[], None),
    // HubSpot CRM v3 objects, in id order, at most 100 per page.
    hubspot_object(
        "contacts",
        endpoints!("/crm/v3/objects/contacts"),
        CONTACTS_MODIFIED,
    ),
    hubspot_object(
        "companies",
        endpoints!("/crm/v3/objects/companies"),
        MODIFIED,
    ),
    hubspot_object("deals", endpoints!("/crm/v3/objects/deals"), MODIFIED),
    hubspot_object("tickets", endpoints!("/crm/v3/objects/tickets"), MODIFIED),
    hubspot_object("products", endpoints!("/crm/v3/objects/products"), MODIFIED),
    hubspot_object(
        "line_items",
        endpoints!("/crm/v3/objects/line_items"),
        MODIFIED,
    ),
    hubspot_object("quotes", endpoints!("/crm/v3/objects/quotes"), MODIFIED),
    hubspot_object("notes", endpoints!("/crm/v3/objects/notes"), MODIFIED),
    hubspot_object("calls", endpoints!("/crm/v3/objects/calls"), MODIFIED),
    hubspot_object("emails", endpoints!("/crm/v3/objects/emails"), MODIFIED),
    hubspot_object("meetings", endpoints!("/crm/v3/objects/meetings"), MODIFIED),
    hubspot_object("tasks", endpoints!("/crm/v3/objects/tasks"), MODIFIED),
    DataTypeSpec {
        platform: "hubspot",
        data_type: "owners",
        endpoints: endpoints!("/crm/v3/owners"),
        records_field: "results",
        pagination: Pagination::NextAfter,
        page_size: 100,
        query: &[("archived", "false")],
        incremental: None,
    },
    DataTypeSpec {
        platform: "hubspot",
        data_type: "pipelines",
        endpoints: &[
            Endpoint {
                path: "/crm/v3/pipelines/deals",
                tag: Some(("objectType", "deals")),
            },
            Endpoint {
                path: "/crm/v3/pipelines/tickets",
                tag: Some(("objectType", "tickets")),
            },
        ],
        records_field: "results",
        pagination: Pagination::Single,
        page_size: 0,
        query: &[],
        incremental: None,
    },
    // Keap REST v1: offset pagination, records under the data type's own name. Only contacts can be
    // filtered by last update (`since`); the other lists' date filters are on creation or due dates.
    keap(
        "contacts",
        endpoints!("/contacts"),
        Some(Incremental::KeapSince),
    ),
    keap("companies", endpoints!("/companies"), None),
    keap("opportunities", endpoints!("/opportunities"), None),
    keap("orders", endpoints!("/orders"), None),
    keap("subscriptions", endpoints!("/subscriptions"), None),
    keap("transactions", endpoints!("/transactions"), None),
    keap("products", endpoints!("/products"), None),
    keap("tags", endpoints!("/tags"), None),
    keap("tasks", endpoints!("/tasks"), None),
    keap("notes", endpoints!("/notes"), None),
    keap("emails", endpoints!("/emails"), None),
    keap("appointments", endpoints!("/appointments"), None),
    keap("campaigns", endpoints!("/campaigns"), None),
    keap("users", endpoints!("/users"), None),
];

/// The spec of a data type, if ListBackup can fetch it.
pub fn find(platform_id: &str, data_type: &str) -> Option<&'static DataTypeSpec> {
    SPECS
        .iter()
        .find(|s| s.platform == platform_id && s.data_type == data_type)
}

/// The data types of a platform that support incremental fetches.
pub fn incremental_data_types(platform_id: &str) -> impl Iterator<Item = &'static str> + '_ {
    SPECS
        .iter()
        .filter(move |s| s.platform == platform_id && s.incremental.is_some())
        .map(|s| s.data_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_domain::platform;
    use std::collections::BTreeSet;

    #[test]
    fn every_catalog_data_type_of_the_three_platforms_is_mapped() {
        for id in ["stripe", "hubspot", "keap"] {
            let platform = platform::find(id).unwrap();
            for dt in platform.data_types {
                assert!(
                    find(id, dt.name).is_some(),
                    "{id}/{} is not mapped",
                    dt.name
                );
            }
        }
    }

    #[test]
    fn specs_name_catalog_data_types_once() {
        let mut seen = BTreeSet::new();
        for spec in SPECS {
            let platform = platform::find(spec.platform).unwrap();
            assert!(
                platform.data_type(spec.data_type).is_some(),
                "{}/{} is not in the catalog",
                spec.platform,
                spec.data_type
            );
            assert!(seen.insert((spec.platform, spec.data_type)));
            assert!(!spec.endpoints.is_empty());
            for endpoint in spec.endpoints {
                assert!(endpoint.path.starts_with('/'));
            }
            if spec.pagination != Pagination::Single {
                assert!(spec.page_size > 0);
            }
            if let Pagination::OffsetWithOverlap { overlap } = spec.pagination {
                // Each page must move forward.
                assert!(overlap >= 1 && overlap < spec.page_size, "{spec:?}");
            }
            if let Some(inc) = spec.incremental {
                assert!(inc.lookback > Duration::ZERO, "{spec:?}");
            }
        }
    }

    #[test]
    fn incremental_data_types_are_listed() {
        assert_eq!(
            incremental_data_types("stripe").collect::<Vec<_>>(),
            ["balance_transactions", "events"]
        );
        assert_eq!(
            incremental_data_types("keap").collect::<Vec<_>>(),
            ["contacts"]
        );
        assert_eq!(incremental_data_types("hubspot").count(), 12);
    }
}
