//! Stripe, API version 2024-06-20 (API reference: https://docs.stripe.com/api).
//!
//! - Authentication: the secret or restricted key as `Authorization: Bearer` (Stripe Connect OAuth tokens
//!   the same way).
//! - Lists (https://docs.stripe.com/api/pagination): `{"object":"list","data":[…],"has_more":…}`, newest first,
//!   `limit` 1–100, `starting_after=<id>`; `created[gte]` filters on creation time.
//! - Errors: `{"error":{"message":…,"type":…}}`. Rate limits: 100 read requests/s in live mode, 25/s in test
//!   mode (https://docs.stripe.com/rate-limits); we keep to the lower.

use super::writes::{RecordWrites, Reference, WriteBody};
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

/// Customers: `POST /v1/customers` creates, `POST /v1/customers/{id}` updates, form-encoded. Through Stripe
/// Connect OAuth the writes need the `read_write` scope (a `read_only` connection may not write).
const CUSTOMER_WRITES: RecordWrites = RecordWrites {
    scopes: &["read_write"],
    create: "/customers",
    update: Some("/customers/{id}"),
    create_fields: CUSTOMER_FIELDS,
    update_fields: CUSTOMER_FIELDS,
    body: WriteBody::BracketedForm,
    ..RecordWrites::BASE
};

/// The product fields a restore sends: those of the product object
/// (<https://docs.stripe.com/api/products/object>) that both create
/// (<https://docs.stripe.com/api/products/create>) and update (<https://docs.stripe.com/api/products/update>)
/// accept. `default_price` is left out: it names a price, restored after the product (a price's `product` names
/// the product, and a reference cannot go both ways), so a re-created product has none until one is set.
const PRODUCT_FIELDS: &[&str] = &[
    "name",
    "active",
    "description",
    "metadata",
    "images",
    "marketing_features",
    "package_dimensions",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
];

/// Products: `POST /v1/products` creates, `POST /v1/products/{id}` updates.
const PRODUCT_WRITES: RecordWrites = RecordWrites {
    create: "/products",
    update: Some("/products/{id}"),
    create_fields: PRODUCT_FIELDS,
    update_fields: PRODUCT_FIELDS,
    ..RecordWrites::BASE
};

/// Prices: `POST /v1/prices` creates (<https://docs.stripe.com/api/prices/create>) with the price's product,
/// amount, currency and recurrence; `POST /v1/prices/{id}` (<https://docs.stripe.com/api/prices/update>)
/// changes only `active`, `lookup_key`, `metadata` and `nickname` (and `tax_behavior` once, from
/// `unspecified`, which a restore does not try). Stripe documents no way to change a price's amount, currency,
/// product or recurrence ("create a new price and archive the old one"), so a price whose platform copy
/// differs there is reported as cannot-restore rather than re-created: a second price would not be the one the
/// subscriptions and invoices refer to. `unit_amount` alone is sent (Stripe refuses it beside
/// `unit_amount_decimal`); a tiered price (no `unit_amount`) is refused by Stripe and reported so. `product`
/// names the product as restored: a product created again by this restore or an earlier one is named by its
/// new id.
const PRICE_WRITES: RecordWrites = RecordWrites {
    create: "/prices",
    update: Some("/prices/{id}"),
    create_fields: &[
        "currency",
        "product",
        "unit_amount",
        "recurring",
        "tax_behavior",
        "active",
        "nickname",
        "lookup_key",
        "metadata",
    ],
    update_fields: &["active", "nickname", "lookup_key", "metadata"],
    immutable_fields: &["currency", "product", "unit_amount", "recurring"],
    references: &[Reference {
        field: "product",
        data_type: "products",
    }],
    ..RecordWrites::BASE
};

/// Coupons: `POST /v1/coupons` creates (<https://docs.stripe.com/api/coupons/create>); an update
/// (<https://docs.stripe.com/api/coupons/update>) changes only `name` and `metadata` ("other coupon details
/// (currency, duration, amount_off) are, by design, not editable"). A re-created coupon gets an id Stripe
/// chooses, mapped in the report. `redeem_by` in the past is refused by Stripe and reported so.
const COUPON_WRITES: RecordWrites = RecordWrites {
    create: "/coupons",
    update: Some("/coupons/{id}"),
    create_fields: &[
        "name",
        "metadata",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "max_redemptions",
        "redeem_by",
    ],
    update_fields: &["name", "metadata"],
    immutable_fields: &[
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "max_redemptions",
        "redeem_by",
    ],
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
        list("products", "Products sold", &[Endpoint::get("/products")]).writes(PRODUCT_WRITES),
        list(
            "prices",
            "Prices of products, one-off and recurring",
            &[Endpoint::get("/prices")],
        )
        .writes(PRICE_WRITES),
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
        list("coupons", "Discount coupons", &[Endpoint::get("/coupons")]).writes(COUPON_WRITES),
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
        // `read_only`, or `read_write` for a restore's writes.
        single_scope: true,
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
