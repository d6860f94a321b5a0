//! QuickBooks Online Accounting API v3
//! (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/account).
//!
//! - Authentication: OAuth 2.0 only (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0):
//!   the client authenticates to the token endpoint with HTTP Basic, the one accounting scope
//!   `com.intuit.quickbooks.accounting` covers every entity (there is no read-only scope), the company
//!   (realm) id comes with the authorization code as `realmId` on the redirect and is part of every path
//!   (`/v3/company/{realmId}/…`). Access tokens last an hour; refresh tokens rotate.
//! - Requests ask for JSON (`Accept: application/json`, XML otherwise) and name the minor version of the
//!   schema: `minorversion=75`, the lowest Intuit still serves since August 2025
//!   (https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/minor-versions).
//! - Lists (https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/data-queries):
//!   the query API, `GET /query?query=SELECT * FROM <Entity> [WHERE …] [ORDERBY …] [STARTPOSITION n]
//!   [MAXRESULTS m]` with a 1-based start and at most 1,000 results; the answer is
//!   `{"QueryResponse":{"<Entity>":[…],"startPosition":n,"maxResults":m},"time":…}`, and
//!   `{"QueryResponse":{}}` when nothing matches. Name lists (accounts, customers, vendors, employees,
//!   items, tax codes, classes, departments) answer active records only unless the query asks for
//!   `Active IN (true, false)`: deactivating is how QuickBooks deletes them, and a backup wants both.
//! - Changes: every entity but CompanyInfo filters and sorts on `Metadata.LastUpdatedTime` (the record's
//!   `MetaData.LastUpdatedTime`, in the company's offset). Chosen over Change Data Capture (`/cdc`), which
//!   answers at most 1,000 changed objects per request without paging and looks back 30 days at most: a
//!   query pages through any number of changes from any time.
//! - Errors (https://developer.intuit.com/app/developer/qbo/docs/develop/troubleshooting/error-codes):
//!   `{"Fault":{"Error":[{"Message","Detail","code"}],"type":"ValidationFault"},"time":…}`, with 400 for
//!   a bad query; 401 for a token expired or revoked, whose body is spelled in lower case
//!   (`{"fault":{"error":[{"message","detail","code":"3200"}],"type":"AUTHENTICATION"}}`); 403
//!   (`AuthorizationFault`) for a user without the permission.
//! - Writes (restore; Customer and Item entity references,
//!   https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/customer and
//!   .../all-entities/item): `POST /<entity>?minorversion=75` with the entity's fields as a JSON object (no
//!   envelope) creates, answered `{"<Entity>": {…, "Id": …}, "time": …}`; the same POST with `"sparse": true`,
//!   the record's `Id` and its current `SyncToken` updates the fields sent only. A `SyncToken` older than the
//!   record's is refused 400 "Stale Object Error" (code 5010): another change came in between, and the
//!   restore reports that record. QuickBooks has no delete for name lists: a record "deleted" in the UI is
//!   inactive (`Active: false`) and is put back by an update. A name in use is refused 400 "Duplicate Name
//!   Exists Error" (code 6240): customers' `DisplayName` is unique across customers, vendors and employees,
//!   items' `Name` among items, and they recognise a record re-created under a new id.
//! - Limits (https://developer.intuit.com/app/developer/qbo/docs/learn/limits-and-throttles):
//!   500 requests per minute per company (realm), 10 concurrent requests per company and app (Intuit's
//!   2016 announcement), answered 429, after which Intuit advises waiting 60 s; a request taking over
//!   120 s times out.

use super::writes::{MatchBy, RecordWrites, Unset, WriteBody};
use super::*;

/// The schema's minor version every request names.
const MINOR_VERSION: &str = "75";

/// What QuickBooks' writes have in common (see the module): a JSON object without envelope, a sparse update
/// on the create's path naming the record's current version, no idempotency key honoured by
/// `Idempotency-Key` (records re-created are recognised by their unique name instead). A field the backup
/// lacks is sent as `null` on update.
const WRITES: RecordWrites = RecordWrites {
    body: WriteBody::Json {
        envelope: None,
        unset: Unset::Null,
    },
    update_current: &["Id", "SyncToken"],
    update_flags: &["sparse"],
    idempotency_key: false,
    ..RecordWrites::BASE
};

/// A customer's writable fields (Customer entity reference). Left out: `Balance`/`OpenBalanceDate` (an
/// opening balance is a transaction of its own; the balance since is the invoices' and payments', which a
/// restore of customers does not write), and what QuickBooks derives (`FullyQualifiedName`, `Level`,
/// `BalanceWithJobs`). `CurrencyRef` goes with a create only: a customer's currency cannot change once set.
/// `ParentRef` names the parent customer by its id, which must exist (a sub-customer whose parent was
/// re-created under a new id is refused and reported).
///
/// The fields a create sends: every updatable one, then those only a create may set.
const CUSTOMER_CREATE_FIELDS: &[&str] = &[
    "DisplayName",
    "Title",
    "GivenName",
    "MiddleName",
    "FamilyName",
    "Suffix",
    "CompanyName",
    "PrintOnCheckName",
    "PrimaryEmailAddr",
    "PrimaryPhone",
    "Mobile",
    "Fax",
    "AlternatePhone",
    "WebAddr",
    "BillAddr",
    "ShipAddr",
    "Notes",
    "Taxable",
    "Active",
    "Job",
    "BillWithParent",
    "ParentRef",
    "PreferredDeliveryMethod",
    "ResaleNum",
    "SalesTermRef",
    "PaymentMethodRef",
    "DefaultTaxCodeRef",
    // Create only (see above).
    "CurrencyRef",
];

/// A customer's updatable fields: all but the create-only tail of [`CUSTOMER_CREATE_FIELDS`].
const CUSTOMER_FIELDS: &[&str] = CUSTOMER_CREATE_FIELDS
    .split_at(CUSTOMER_CREATE_FIELDS.len() - 1)
    .0;

const CUSTOMER_WRITES: RecordWrites = RecordWrites {
    create: "/customer?minorversion=75",
    update: Some("/customer?minorversion=75"),
    create_fields: CUSTOMER_CREATE_FIELDS,
    update_fields: CUSTOMER_FIELDS,
    new_id: "/Customer/Id",
    matched_by: MatchBy::Key("/DisplayName"),
    ..WRITES
};

/// An item's writable fields on update (Item entity reference). A create also sends what can only be set
/// then: `Type` (an inventory item cannot become another type), `TrackQtyOnHand`, and an inventory item's
/// opening `QtyOnHand` as of `InvStartDate` with its three accounts (`IncomeAccountRef`, `ExpenseAccountRef`,
/// `AssetAccountRef`, required for `Type: Inventory`; a service or non-inventory item needs an
/// `IncomeAccountRef`). The accounts are referred to by id: QuickBooks never deletes an account, but one made
/// inactive since is refused and the item reported. `QtyOnHand` is not updated: the stock has moved with
/// the sales and purchases since, and QuickBooks records a change of it as an inventory adjustment, which
/// a restore must not invent. A bundle (`Type: Group`) is sent without its components
/// (`ItemGroupDetail`): they are not restored, and a refusal of such an item is reported per record.
///
/// The fields a create sends: every updatable one, then those only a create may set (the item's type and
/// its starting quantity on hand).
const ITEM_CREATE_FIELDS: &[&str] = &[
    "Name",
    "Description",
    "Active",
    "SubItem",
    "ParentRef",
    "Taxable",
    "UnitPrice",
    "PurchaseDesc",
    "PurchaseCost",
    "IncomeAccountRef",
    "ExpenseAccountRef",
    "AssetAccountRef",
    "Sku",
    "SalesTaxCodeRef",
    "PurchaseTaxCodeRef",
    "ReorderPoint",
    "PrefVendorRef",
    // Create only (see above).
    "Type",
    "TrackQtyOnHand",
    "QtyOnHand",
    "InvStartDate",
];

/// An item's updatable fields: all but the four create-only ones at the end of [`ITEM_CREATE_FIELDS`].
const ITEM_FIELDS: &[&str] = ITEM_CREATE_FIELDS.split_at(ITEM_CREATE_FIELDS.len() - 4).0;

const ITEM_WRITES: RecordWrites = RecordWrites {
    create: "/item?minorversion=75",
    update: Some("/item?minorversion=75"),
    create_fields: ITEM_CREATE_FIELDS,
    update_fields: ITEM_FIELDS,
    new_id: "/Item/Id",
    matched_by: MatchBy::Key("/Name"),
    ..WRITES
};

/// The query API's one endpoint.
const QUERY: &[Endpoint] = &[Endpoint::get("/query")];

/// Results per query, the maximum.
const PAGE: PageSize = PageSize {
    param: None,
    size: 1000,
};

/// Queries page by `STARTPOSITION` with this much overlap: up to 19 records moving out of place before the
/// position between two requests (deleted, or updated and so sorted to the end) cost nothing; 2% more
/// records read.
const OVERLAP: u32 = 20;

/// A listing by the query API: `statement` on a full run, `since` (the same with a time condition) on an
/// incremental one; the entity's records under `/QueryResponse/<Entity>`, none when absent.
const fn query(records: &'static str, statement: &'static str, since: &'static str) -> Listing {
    Listing {
        absent_is_empty: true,
        id_field: "Id",
        query: &[("minorversion", MINOR_VERSION)],
        incremental: Some(IncrementalFetch {
            cursor_field: "LastUpdatedTime",
            filter: TimeFilter::InStatement {
                template: since,
                format: TimeFormat::Rfc3339,
            },
            record_time: TimeField {
                // Only ever inside `MetaData` (the top-level name is a fallback no record has).
                field: "LastUpdatedTime",
                nested: Some(("MetaData", "LastUpdatedTime")),
                format: TimeFormat::Rfc3339,
            },
            // Intuit documents no delay between a change and the query seeing it; two minutes cover
            // writes stamped before they commit and clock differences between its servers.
            lookback: Duration::from_secs(2 * 60),
        }),
        ..Listing::new(
            QUERY,
            records,
            Pagination::Offset {
                offset: OffsetParam::Statement {
                    param: "query",
                    template: statement,
                },
                overlap: OVERLAP,
                // A query announces no total (only `SELECT COUNT(*)` does).
                total: None,
                used_limit: None,
            },
            PAGE,
        )
    }
}

/// A transaction entity, all of it: sorted by its last change, so each run's pages follow the order the
/// incremental filter uses.
macro_rules! transactions {
    ($name:literal, $description:literal, $entity:literal) => {
        DataType::new(
            $name,
            $description,
            query(
                concat!("/QueryResponse/", $entity),
                concat!(
                    "SELECT * FROM ",
                    $entity,
                    " ORDERBY Metadata.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {max}"
                ),
                concat!(
                    "SELECT * FROM ",
                    $entity,
                    " WHERE Metadata.LastUpdatedTime >= '{since}'",
                    " ORDERBY Metadata.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {max}"
                ),
            ),
        )
    };
}

/// A name-list entity, active and inactive records alike (QuickBooks "deletes" them by deactivating).
macro_rules! name_list {
    ($name:literal, $description:literal, $entity:literal) => {
        DataType::new(
            $name,
            $description,
            query(
                concat!("/QueryResponse/", $entity),
                concat!(
                    "SELECT * FROM ",
                    $entity,
                    " WHERE Active IN (true, false)",
                    " ORDERBY Metadata.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {max}"
                ),
                concat!(
                    "SELECT * FROM ",
                    $entity,
                    " WHERE Active IN (true, false) AND Metadata.LastUpdatedTime >= '{since}'",
                    " ORDERBY Metadata.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {max}"
                ),
            ),
        )
    };
}

pub(super) const PLATFORM: Platform = Platform {
    id: "quickbooks",
    name: "QuickBooks Online",
    category: "accounting",
    auth_types: OAUTH,
    credential_fields: &[],
    data_types: &[
        DataType::new(
            "company_info",
            "Company settings",
            // The company's one CompanyInfo record, as a query answers it: a list of one.
            Listing {
                absent_is_empty: true,
                id_field: "Id",
                query: &[
                    ("query", "SELECT * FROM CompanyInfo"),
                    ("minorversion", MINOR_VERSION),
                ],
                ..Listing::new(
                    QUERY,
                    "/QueryResponse/CompanyInfo",
                    Pagination::Single,
                    PageSize::NONE,
                )
            },
        ),
        name_list!("accounts", "Chart of accounts", "Account"),
        name_list!("customers", "Customers", "Customer").writes(CUSTOMER_WRITES),
        name_list!("vendors", "Vendors", "Vendor"),
        name_list!("employees", "Employees", "Employee"),
        name_list!("items", "Products and services", "Item").writes(ITEM_WRITES),
        transactions!("invoices", "Invoices", "Invoice"),
        transactions!("estimates", "Estimates", "Estimate"),
        transactions!("sales_receipts", "Sales receipts", "SalesReceipt"),
        transactions!("payments", "Customer payments", "Payment"),
        transactions!("credit_memos", "Credit memos", "CreditMemo"),
        transactions!("bills", "Vendor bills", "Bill"),
        transactions!("bill_payments", "Payments of vendor bills", "BillPayment"),
        transactions!(
            "purchases",
            "Expenses, checks and credit card charges",
            "Purchase"
        ),
        transactions!("deposits", "Bank deposits", "Deposit"),
        transactions!("transfers", "Transfers between accounts", "Transfer"),
        transactions!("journal_entries", "Journal entries", "JournalEntry"),
        name_list!("tax_codes", "Sales tax codes", "TaxCode"),
        name_list!("classes", "Classes for tracking", "Class"),
        name_list!(
            "departments",
            "Departments (locations) for tracking",
            "Department"
        ),
    ],
    // Intuit has no read-only accounting scope.
    oauth_scopes: &["com.intuit.quickbooks.accounting"],
    api_base_url: "https://quickbooks.api.intuit.com/v3/company/{realmId}",
    api_key_auth: None,
    // The API answers XML unless asked for JSON.
    api_headers: &[("Accept", "application/json")],
    url_params: &[UrlParam::FromOauth { name: "realmId" }],
    identity: Identity {
        // The realm (company) id is the account; the body's `Id` is the CompanyInfo record's.
        id_setting: Some("realmId"),
        ..Identity::get(
            "/companyinfo/{realmId}?minorversion=75",
            &[],
            &["/CompanyInfo/CompanyName"],
        )
    },
    oauth: Some(Oauth {
        // Intuit requires the client's credentials as HTTP Basic, and names the company (realm) in the
        // callback, not in the token answer.
        client_auth: ClientAuth::Basic,
        callback_settings: &["realmId"],
        ..Oauth::new(
            "https://appcenter.intuit.com/connect/oauth2",
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        )
    }),
    // 500 requests per minute per company is 8.3 a second: 8 stays under it, and with answers of under a
    // second keeps well under the 10 concurrent requests allowed.
    rate: DefaultRate::per_second(8.0),
    // `Detail` says what is wrong with a query; the lower-case spelling is the 401's (dropped anyway).
    error_messages: &[
        "/Fault/Error/0/Detail",
        "/Fault/Error/0/Message",
        "/fault/error/0/detail",
        "/fault/error/0/message",
    ],
    // A token expired or revoked: 401 `AuthenticationFailed` (code 3200); 403 `AuthorizationFault` is another
    // company or a missing subscription.
    credentials_rejected: REJECTED_401,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_only_fields_are_never_sent_by_an_update() {
        assert!(CUSTOMER_CREATE_FIELDS.contains(&"CurrencyRef"));
        assert!(!CUSTOMER_FIELDS.contains(&"CurrencyRef"));
        for field in ["Type", "TrackQtyOnHand", "QtyOnHand", "InvStartDate"] {
            assert!(ITEM_CREATE_FIELDS.contains(&field));
            assert!(!ITEM_FIELDS.contains(&field), "{field}");
        }
        assert!(CUSTOMER_FIELDS.contains(&"DefaultTaxCodeRef"));
        assert!(ITEM_FIELDS.contains(&"PrefVendorRef"));
    }
}
