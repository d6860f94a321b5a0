//! Shopify Admin REST API 2024-10 (https://shopify.dev/docs/api/admin-rest).
//!
//! Its data types are in the catalog but not listed yet: sources cannot select them.

use super::*;

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
        DataType::not_listed("shop", "Store settings"),
        DataType::not_listed("customers", "Customers and their addresses"),
        DataType::not_listed("orders", "Orders with line items, fulfillments and refunds"),
        DataType::not_listed("draft_orders", "Draft orders"),
        DataType::not_listed("products", "Products with variants and images"),
        DataType::not_listed("custom_collections", "Manually curated collections"),
        DataType::not_listed("smart_collections", "Rule-based collections"),
        DataType::not_listed("inventory_levels", "Stock per inventory item and location"),
        DataType::not_listed("locations", "Store locations"),
        DataType::not_listed("price_rules", "Price rules behind discounts"),
        DataType::not_listed("discount_codes", "Discount codes of price rules"),
        DataType::not_listed("pages", "Online store pages"),
        DataType::not_listed("blogs", "Online store blogs"),
        DataType::not_listed("articles", "Blog articles"),
    ],
    oauth_scopes: &[
        "read_customers",
        "read_orders",
        // Without it only the last 60 days of orders are visible: a backup wants them all.
        "read_all_orders",
        "read_draft_orders",
        "read_products",
        "read_inventory",
        "read_locations",
        "read_price_rules",
        "read_discounts",
        "read_content",
        "read_fulfillments",
    ],
    api_base_url: "https://{shop}/admin/api/2024-10",
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
        needs_shop: true,
        ..Oauth::new(
            "https://{shop}/admin/oauth/authorize",
            "https://{shop}/admin/oauth/access_token",
        )
    }),
    rate: DefaultRate::per_second(2.0),
    error_messages: &["/errors"],
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
}
