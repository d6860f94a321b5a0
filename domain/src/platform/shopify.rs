//! Shopify Admin REST API, version 2026-10 (https://shopify.dev/docs/api/admin-rest; "legacy" since October
//! 2024 but still versioned: each stable version is supported for at least 12 months,
//! https://shopify.dev/docs/api/usage/versioning — 2026-10 until October 2027).
//!
//! - Authentication: `X-Shopify-Access-Token: <token>`, the Admin API access token of a custom app
//!   (`shpat_…`) or an OAuth access token; each store is its own host (`<shop>.myshopify.com`) and its own
//!   OAuth authorization server.
//! - Lists (https://shopify.dev/docs/api/admin-rest/usage/pagination): `GET /<resource>.json` →
//!   `{"<resource>":[…]}`, `limit` ≤ 250 (default 50); the next page is the `Link` header's
//!   `rel="next"` URL, `…?limit=&page_info=…`. A request carrying `page_info` may carry only `limit` and
//!   `fields` (anything else is a 400), so filters (`status=any`, `updated_at_min`) go on the first request
//!   only and the link carries them on. Lists that filter on `updated_at_min` are incremental.
//! - Errors: `{"errors":"…"}` or `{"errors":{"<field>":["…"]}}`. Rate limits
//!   (https://shopify.dev/docs/api/admin-rest/usage/rate-limits): a leaky bucket per app and store of 40
//!   requests leaking 2/s on standard plans (4/s Advanced, 20/s Plus), reported in
//!   `X-Shopify-Shop-Api-Call-Limit: <used>/40`; past it, 429 with `Retry-After: 2.0`.

use super::writes::{MatchBy, RecordWrites, Unset, WriteBody, WriteMethod};
use super::*;

/// Customers' writes (Admin REST customer resource,
/// <https://shopify.dev/docs/api/admin-rest/latest/resources/customer>): `POST /customers.json` creates (201),
/// `PUT /customers/{id}.json` updates the fields sent (200), both `{"customer": {…}}` answered the same way.
/// A customer's e-mail address is unique in a shop ("has already been taken", 422): it recognises one
/// re-created; Shopify has no idempotency key. Addresses go with a create only (an update's addresses
/// without their ids would add more); order counts, totals, `state` and `currency` are the shop's.
const CUSTOMER_WRITES: RecordWrites = RecordWrites {
    create: "/customers.json",
    update: Some("/customers/{id}.json"),
    create_fields: &[
        "first_name",
        "last_name",
        "email",
        "phone",
        "note",
        "tags",
        "tax_exempt",
        "verified_email",
        "addresses",
    ],
    update_fields: &[
        "first_name",
        "last_name",
        "email",
        "phone",
        "note",
        "tags",
        "tax_exempt",
    ],
    body: WriteBody::Json {
        envelope: Some("customer"),
        unset: Unset::Null,
    },
    update_method: WriteMethod::Put,
    new_id: "/customer/id",
    matched_by: MatchBy::Key("/email"),
    // OAuth access scopes (https://shopify.dev/docs/api/usage/access-scopes): `write_customers`.
    scopes: &["write_customers"],
    idempotency_key: false,
    ..RecordWrites::BASE
};

/// Products' writes (Admin REST product resource,
/// <https://shopify.dev/docs/api/admin-rest/latest/resources/product>): `POST /products.json` (201, a `title`
/// is required), `PUT /products/{id}.json` (200), both `{"product": {…}}`. The `handle` is unique in a shop
/// and recognises a product re-created. Variants, options and images keep ids of their own that a new
/// product cannot take: a re-created product gets Shopify's default variant.
const PRODUCT_FIELDS: &[&str] = &[
    "title",
    "body_html",
    "vendor",
    "product_type",
    "handle",
    "tags",
    "status",
    "template_suffix",
];

const PRODUCT_WRITES: RecordWrites = RecordWrites {
    create: "/products.json",
    update: Some("/products/{id}.json"),
    create_fields: PRODUCT_FIELDS,
    update_fields: PRODUCT_FIELDS,
    new_id: "/product/id",
    body: WriteBody::Json {
        envelope: Some("product"),
        unset: Unset::Null,
    },
    matched_by: MatchBy::Key("/handle"),
    scopes: &["write_products"],
    ..CUSTOMER_WRITES
};

/// The Admin API version of every path (and of the emulation, which states it on its own).
pub const API_VERSION: &str = "2026-10";

pub(super) const PLATFORM: Platform = Platform {
    id: "shopify",
    name: "Shopify",
    category: "ecommerce",
    auth_types: BOTH,
    credential_fields: &[
        plain(
            "shop",
            "Shop domain (your-store.myshopify.com)",
            CredentialFieldType::String,
        )
        .shaped(FieldShape::ShopDomain),
        secret("adminApiAccessToken", "Admin API access token (shpat_…)"),
    ],
    data_types: &[
        DataType::new(
            "shop",
            "Store settings",
            // `GET /shop.json` → `{"shop":{…}}`: the store itself, one object. Readable with any scope.
            Listing {
                single_object: true,
                ..Listing::new(
                    &[Endpoint::get("/shop.json")],
                    "/shop",
                    Pagination::Single,
                    PageSize::NONE,
                )
            },
        ),
        changed(
            "customers",
            "Customers and their addresses",
            &[Endpoint::get("/customers.json")],
            "/customers",
        )
        .scopes(&["read_customers"])
        .writes(CUSTOMER_WRITES),
        DataType::new(
            "orders",
            "Orders with line items, fulfillments and refunds",
            Listing {
                // Without `status=any` only open orders are listed.
                query: &[("status", "any")],
                incremental: Some(UPDATED),
                ..listing(&[Endpoint::get("/orders.json")], "/orders")
            },
        )
        // Without `read_all_orders` only the last 60 days of orders are visible: a backup wants them all.
        .scopes(&["read_orders", "read_all_orders"]),
        changed(
            "draft_orders",
            "Draft orders",
            &[Endpoint::get("/draft_orders.json")],
            "/draft_orders",
        )
        .scopes(&["read_draft_orders"]),
        changed(
            "products",
            "Products with variants and images",
            &[Endpoint::get("/products.json")],
            "/products",
        )
        .scopes(&["read_products"])
        .writes(PRODUCT_WRITES),
        changed(
            "custom_collections",
            "Manually curated collections",
            &[Endpoint::get("/custom_collections.json")],
            "/custom_collections",
        )
        .scopes(&["read_products"]),
        changed(
            "smart_collections",
            "Rule-based collections",
            &[Endpoint::get("/smart_collections.json")],
            "/smart_collections",
        )
        .scopes(&["read_products"]),
        DataType::new(
            "inventory_levels",
            "Stock per inventory item and location",
            // Listed per location (`GET /locations/{location_id}/inventory_levels.json`); each level names
            // its `location_id` and `inventory_item_id` and has no id of its own.
            Listing {
                id_field: "inventory_item_id",
                per_parent: Some(PerParent {
                    data_type: "locations",
                    placeholder: "location_id",
                    tag: None,
                }),
                ..listing(
                    &[Endpoint::get(
                        "/locations/{location_id}/inventory_levels.json",
                    )],
                    "/inventory_levels",
                )
            },
        )
        .scopes(&["read_locations", "read_inventory"]),
        DataType::new(
            "locations",
            "Store locations",
            // `GET /locations.json` answers every location at once: it takes no `limit` and sends no link.
            Listing::new(
                &[Endpoint::get("/locations.json")],
                "/locations",
                Pagination::Single,
                PageSize::NONE,
            ),
        )
        .scopes(&["read_locations"]),
        changed(
            "price_rules",
            "Price rules behind discounts",
            &[Endpoint::get("/price_rules.json")],
            "/price_rules",
        )
        .scopes(&["read_price_rules"]),
        DataType::new(
            "discount_codes",
            "Discount codes of price rules",
            // Per price rule; each code names its `price_rule_id`.
            Listing {
                per_parent: Some(PerParent {
                    data_type: "price_rules",
                    placeholder: "price_rule_id",
                    tag: None,
                }),
                ..listing(
                    &[Endpoint::get(
                        "/price_rules/{price_rule_id}/discount_codes.json",
                    )],
                    "/discount_codes",
                )
            },
        )
        .scopes(&["read_price_rules", "read_discounts"]),
        changed(
            "pages",
            "Online store pages",
            &[Endpoint::get("/pages.json")],
            "/pages",
        )
        .scopes(&["read_content"]),
        // Blogs filter on nothing but `since_id` and `handle`: listed whole.
        DataType::new(
            "blogs",
            "Online store blogs",
            listing(&[Endpoint::get("/blogs.json")], "/blogs"),
        )
        .scopes(&["read_content"]),
        DataType::new(
            "articles",
            "Blog articles",
            // Per blog; each article names its `blog_id`.
            Listing {
                per_parent: Some(PerParent {
                    data_type: "blogs",
                    placeholder: "blog_id",
                    tag: None,
                }),
                ..listing(
                    &[Endpoint::get("/blogs/{blog_id}/articles.json")],
                    "/articles",
                )
            },
        )
        .scopes(&["read_content"]),
    ],
    // The store (`/shop.json`, the "who am I" call) needs no scope, yet an authorization asks for one: the
    // locations, the least sensitive data (store addresses), which every inventory listing needs anyway.
    oauth_scopes: &["read_locations"],
    api_base_url: "https://{shop}/admin/api/2026-10",
    api_key_auth: Some(ApiAuth::Header {
        header: "X-Shopify-Access-Token",
        token_field: "adminApiAccessToken",
    }),
    api_headers: &[],
    url_params: &[],
    identity: Identity::get(
        "/shop.json",
        &["/shop/id"],
        &["/shop/name", "/shop/myshopify_domain"],
    ),
    oauth: Some(Oauth {
        api_auth: ApiAuth::Header {
            header: "X-Shopify-Access-Token",
            token_field: OAUTH_ACCESS_TOKEN,
        },
        scope_separator: ",",
        // Each store is its own authorization server, and signs its callback.
        account_host: Some(AccountHost {
            field: "shop",
            shape: FieldShape::ShopDomain,
            example: "a shop domain such as `your-store.myshopify.com`",
        }),
        signed_callback: true,
        ..Oauth::new(
            "https://{shop}/admin/oauth/authorize",
            "https://{shop}/admin/oauth/access_token",
        )
    }),
    // The standard plan's bucket: 40 requests, leaking 2/s. A budget of 2/s with a burst of 35 never
    // overflows it and leaves 5 for the connection test and any request the budget does not see.
    // (`LISTBACKUP_PLATFORM_SHOPIFY_RATE_LIMIT` raises it for Advanced and Plus stores.)
    rate: DefaultRate {
        per_second: 2.0,
        burst: 35,
        limited_when: &[],
    },
    error_messages: &["/errors"],
    // 401 `{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}` (Admin
    // REST reference, "Status and error codes"); 403 is a scope the app was not granted.
    credentials_rejected: REJECTED_401,
};

// The default budget never overflows the standard plan's bucket (40, leaking 2/s): its burst fits in it, and
// its rate does not outrun the leak.
const _: () = assert!(PLATFORM.rate.burst < 40 && PLATFORM.rate.per_second <= 2.0);

/// A Shopify list: records under the resource's name, 250 per page, the next page in the `Link` header.
const fn listing(endpoints: &'static [Endpoint], records: &'static str) -> Listing {
    Listing::new(
        endpoints,
        records,
        Pagination::LinkHeader,
        PageSize::param("limit", 250),
    )
}

/// A list filtered by `updated_at_min`: incremental by its records' `updated_at`.
const fn changed(
    name: &'static str,
    description: &'static str,
    endpoints: &'static [Endpoint],
    records: &'static str,
) -> DataType {
    DataType::new(
        name,
        description,
        Listing {
            incremental: Some(UPDATED),
            ..listing(endpoints, records)
        },
    )
}

/// `updated_at_min` (ISO 8601, inclusive) on the records' `updated_at`, which every change moves. Shopify
/// documents no delay between a change and the list showing it; two minutes of lookback cover writes stamped
/// before they commit and clock differences between its servers.
const UPDATED: IncrementalFetch = IncrementalFetch {
    cursor_field: "updated_at",
    filter: TimeFilter::QueryParam {
        param: "updated_at_min",
        format: TimeFormat::Rfc3339,
    },
    record_time: TimeField {
        field: "updated_at",
        nested: None,
        format: TimeFormat::Rfc3339,
    },
    lookback: Duration::from_secs(2 * 60),
};

/// `<name>.myshopify.com`, lower-cased; anything else (another host, a path, a port) is refused: each store is
/// its own OAuth authorization server, so the shop names the host the flow talks to.
pub fn validate_shop(raw: &str) -> Option<String> {
    let shop = raw.trim().to_ascii_lowercase();
    let name = shop.strip_suffix(".myshopify.com")?;
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(shop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shops_must_be_myshopify_domains() {
        assert_eq!(
            validate_shop(" Acme-Store.myshopify.com "),
            Some("acme-store.myshopify.com".into())
        );
        for bad in [
            "acme",
            "acme.example.com",
            "evil.com/x.myshopify.com",
            "a.b.myshopify.com",
            ".myshopify.com",
            "acme.myshopify.com:8080",
            "acme.myshopify.com.evil.com",
        ] {
            assert_eq!(validate_shop(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_follow_the_data_types_and_children_need_their_parents() {
        assert_eq!(PLATFORM.scopes_for(Some(&["shop"])), ["read_locations"]);
        assert_eq!(
            PLATFORM.scopes_for(Some(&["discount_codes"])),
            ["read_locations", "read_price_rules", "read_discounts"]
        );
        assert_eq!(
            PLATFORM.scopes_for(Some(&["orders"])),
            ["read_locations", "read_orders", "read_all_orders"]
        );
        let all = PLATFORM.scopes_for(None);
        assert!(
            all.iter().all(|s| s.starts_with("read_")),
            "read-only: {all:?}"
        );
    }

    #[test]
    fn one_api_version_everywhere() {
        assert!(PLATFORM
            .api_base_url
            .ends_with(&format!("/admin/api/{API_VERSION}")));
    }
}
