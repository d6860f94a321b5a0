//! Stripe, API version 2024-06-20 (API reference: https://docs.stripe.com/api).
//!
//! - Authentication: the secret or restricted key as `Authorization: Bearer` (Stripe Connect OAuth tokens
//!   the same way).
//! - Lists (https://docs.stripe.com/api/pagination): `{"object":"list","data":[…],"has_more":…}`, newest first,
//!   `limit` 1–100, `starting_after=<id>`; `created[gte]` filters on creation time.
//! - Errors: `{"error":{"message":…,"type":…}}`. Rate limits: 100 read requests/s in live mode, 25/s in test
//!   mode (https://docs.stripe.com/rate-limits); we keep to the lower.

use super::writes::{RecordWrites, WriteBody};
use super::*;

/// The customer fields a restore sends: those of the customer object
/// (<https://docs.stripe.com/api/customers/object>) that both create (<https://docs.stripe.com/api/customers/create>)
/// and update (<https://docs.stripe.com/api/customers/update>) accept. The id, `created`, `currency`,
/// `delinquent`, `discount`, `default_source` and `invoice_settings` (payment methods cannot be copied back)
/// are Stripe's to set: a re-created customer gets a new id (`cus_…`); the report maps the old one to it.
const CUSTOMER_FIELDS: &[&str] = &[
    "name",
    "email",
    "description",
    "phone",
    "address",
    "shipping",
    "metadata",
    "preferred_locales",
    "tax_exempt",
    "balance",
    "invoice_prefix",
];

/// Customers: `POST /v1/customers` creates, `POST /v1/customers/{id}` updates, form-encoded.
const CUSTOMER_WRITES: RecordWrites = RecordWrites {
    create: "/customers",
    update: Some("/customers/{id}"),
    create_fields: CUSTOMER_FIELDS,
    update_fields: CUSTOMER_FIELDS,
    body: WriteBody::BracketedForm,
    ..RecordWrites::BASE
};

pub(super) const PLATFORM: Platform = Platform {
    id: "stripe",
    name: "Stripe",
    category: "payments",
    auth_types: BOTH,
    credential_fields: &[
        secret("secretKey", "Secret or restricted API key (sk_… / rk_…)")
            // Secret keys start `sk_`, restricted keys `rk_` (https://docs.stripe.com/keys); a publishable `pk_` key
            // cannot read anything.
            .shaped(FieldShape::Prefixed(&["sk_", "rk_"])),
    ],
    data_types: &[
        list(
            "customers",
            "Customers and their default payment settings",
            &[Endpoint::get("/customers")],
        )
        .writes(CUSTOMER_WRITES),
        list(
            "charges",
            "Charges made against payment sources",
            &[Endpoint::get("/charges")],
        ),
        list(
            "invoices",
            "Invoices and their line items",
            &[Endpoint::get("/invoices")],
        ),
        DataType::new(
            "subscriptions",
            "Recurring subscriptions",
            Listing {
                // Without `status=all` cancelled subscriptions are not listed.
                query: &[("status", "all")],
                ..listing(&[Endpoint::get("/subscriptions")])
            },
        ),
        list("products", "Products sold", &[Endpoint::get("/products")]),
        list(
            "prices",
            "Prices of products, one-off and recurring",
            &[Endpoint::get("/prices")],
        ),
        list(
            "payment_intents",
            "Payment intents and their status",
            &[Endpoint::get("/payment_intents")],
        ),
        list(
            "refunds",
            "Refunds of charges",
            &[Endpoint::get("/refunds")],
        ),
        list(
            "disputes",
            "Disputes (chargebacks) raised by card holders",
            &[Endpoint::get("/disputes")],
        ),
        list(
            "payouts",
            "Payouts to the bank account",
            &[Endpoint::get("/payouts")],
        ),
        DataType::new(
            "balance_transactions",
            "Every movement of the Stripe balance",
            Listing {
                incremental: Some(CREATED),
                ..listing(&[Endpoint::get("/balance_transactions")])
            },
        ),
        DataType::new(
            "events",
            "The account's event log (last 30 days)",
            Listing {
                incremental: Some(CREATED),
                ..listing(&[Endpoint::get("/events")])
            },
        ),
        list("coupons", "Discount coupons", &[Endpoint::get("/coupons")]),
        list(
            "credit_notes",
            "Credit notes issued against invoices",
            &[Endpoint::get("/credit_notes")],
        ),
    ],
    // Stripe Connect OAuth: read-only access to the connected account.
    oauth_scopes: &["read_only"],
    api_base_url: "https://api.stripe.com/v1",
    api_key_auth: Some(ApiAuth::Bearer {
        token_field: "secretKey",
    }),
    api_headers: &[],
    url_params: &[],
    identity: Identity::get(
        "/account",
        &["/id"],
        &[
            "/settings/dashboard/display_name",
            "/business_profile/name",
            "/id",
        ],
    ),
    oauth: Some(Oauth {
        // Stripe Connect: the token response names the connected account.
        token_settings: &[("stripe_user_id", "stripeUserId")],
        ..Oauth::new(
            "https://connect.stripe.com/oauth/authorize",
            "https://connect.stripe.com/oauth/token",
        )
    }),
    rate: DefaultRate::per_second(25.0),
    error_messages: &["/error/message"],
    // A wrong, revoked or expired key: 401 `{"error":{"type":"invalid_request_error","message":"Invalid API
    // Key provided: …"}}` (API reference, "Errors"); a restricted key lacking a permission is a 403 instead.
    credentials_rejected: REJECTED_401,
};

/// Every Stripe list: newest first, 100 per page, keyset by the last record's id.
const fn listing(endpoints: &'static [Endpoint]) -> Listing {
    Listing::new(
        endpoints,
        "/data",
        Pagination::AfterLastId {
            param: "starting_after",
            more: "/has_more",
        },
        PageSize::param("limit", 100),
    )
}

/// A data type read from one list endpoint, listed whole on every run.
const fn list(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
) -> DataType {
    DataType::new(name, description, listing(endpoints))
}

/// Stripe objects that never change once created (the event log, balance transactions) are incremental by
/// `created`: a `created` filter would miss updates to a customer or an invoice, so nothing else is. Stripe's
/// event log and balance transactions become visible with a delay after their `created` time, hence the
/// 5-minute lookback.
const CREATED: IncrementalFetch = IncrementalFetch {
    cursor_field: "created",
    filter: TimeFilter::QueryParam {
        param: "created[gte]",
        format: TimeFormat::UnixSeconds,
    },
    record_time: TimeField {
        field: "created",
        nested: None,
        format: TimeFormat::UnixSeconds,
    },
    lookback: Duration::from_secs(5 * 60),
};
