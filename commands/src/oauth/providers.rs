//! What differs between the nine OAuth platforms beyond the catalog's endpoints and scopes: extra authorization
//! parameters, how the client authenticates to the token endpoint, which values of the callback or the token
//! response the connection keeps, and where the platform says who authorized.

use listbackup_domain::platform::HttpMethod;

/// How the client proves itself to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields of the request body.
    RequestBody,
    /// `Authorization: Basic base64(client_id:client_secret)` (Intuit requires it).
    Basic,
}

/// The endpoint that names the authorized platform account, relative to the platform's API base URL.
#[derive(Debug, Clone, Copy)]
pub struct UserInfo {
    pub method: HttpMethod,
    /// May contain `{setting}` placeholders (QuickBooks' `{realmId}`, HighLevel's `{locationId}`).
    pub path: &'static str,
    /// JSON pointers to the account id, first match wins.
    pub id: &'static [&'static str],
    /// JSON pointers to a human-readable account name, first match wins.
    pub name: &'static [&'static str],
    /// A setting that is the account id when the body does not name one (QuickBooks' realm).
    pub id_setting: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub platform_id: &'static str,
    pub client_auth: ClientAuth,
    /// Added to the authorization URL as they are.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Scopes are joined with this (Shopify wants commas; everyone else follows RFC 6749's spaces).
    pub scope_separator: &'static str,
    /// Each store is its own authorization server: the flow needs a validated `<name>.myshopify.com`.
    pub needs_shop: bool,
    /// Query parameters of the callback kept as connection settings (QuickBooks' company id).
    pub callback_settings: &'static [&'static str],
    /// Fields of the token response kept as settings: (field in the response, setting name).
    pub token_settings: &'static [(&'static str, &'static str)],
    pub user_info: UserInfo,
}

const fn get(path: &'static str) -> (HttpMethod, &'static str) {
    (HttpMethod::Get, path)
}

const fn user_info(
    (method, path): (HttpMethod, &'static str),
    id: &'static [&'static str],
    name: &'static [&'static str],
) -> UserInfo {
    UserInfo {
        method,
        path,
        id,
        name,
        id_setting: None,
    }
}

const fn provider(platform_id: &'static str, user_info: UserInfo) -> Provider {
    Provider {
        platform_id,
        client_auth: ClientAuth::RequestBody,
        authorize_params: &[],
        scope_separator: " ",
        needs_shop: false,
        callback_settings: &[],
        token_settings: &[],
        user_info,
    }
}

pub static PROVIDERS: &[Provider] = &[
    Provider {
        // Without both, Google issues no refresh token (or only on the very first consent).
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        ..provider(
            "google",
            user_info(get("/oauth2/v3/userinfo"), &["/sub"], &["/email", "/name"]),
        )
    },
    Provider {
        // Dropbox issues short-lived access tokens; a refresh token only when asked for offline access.
        authorize_params: &[("token_access_type", "offline")],
        ..provider(
            "dropbox",
            user_info(
                (HttpMethod::Post, "/2/users/get_current_account"),
                &["/account_id"],
                &["/email", "/name/display_name"],
            ),
        )
    },
    provider(
        "box",
        user_info(get("/users/me"), &["/id"], &["/login", "/name"]),
    ),
    Provider {
        client_auth: ClientAuth::Basic,
        callback_settings: &["realmId"],
        ..provider(
            "quickbooks",
            UserInfo {
                id_setting: Some("realmId"),
                // The realm (company) id is the account; the body's `Id` is the CompanyInfo record's.
                ..user_info(
                    get("/companyinfo/{realmId}"),
                    &[],
                    &["/CompanyInfo/CompanyName"],
                )
            },
        )
    },
    Provider {
        scope_separator: ",",
        needs_shop: true,
        ..provider(
            "shopify",
            user_info(
                get("/shop.json"),
                &["/shop/id"],
                &["/shop/name", "/shop/myshopify_domain"],
            ),
        )
    },
    Provider {
        // Stripe Connect: the token response names the connected account.
        token_settings: &[("stripe_user_id", "stripeUserId")],
        ..provider(
            "stripe",
            user_info(
                get("/account"),
                &["/id"],
                &[
                    "/settings/dashboard/display_name",
                    "/business_profile/name",
                    "/email",
                    "/id",
                ],
            ),
        )
    },
    provider(
        "hubspot",
        user_info(
            get("/account-info/v3/details"),
            &["/portalId"],
            &["/uiDomain", "/portalId"],
        ),
    ),
    provider(
        "keap",
        user_info(
            get("/oauth/connect/userinfo"),
            &["/global_user_id", "/sub"],
            &["/email", "/preferred_name"],
        ),
    ),
    Provider {
        // A location-level token says which sub-account it is for; API paths need it.
        token_settings: &[("locationId", "locationId"), ("companyId", "companyId")],
        ..provider(
            "gohighlevel",
            user_info(
                get("/locations/{locationId}"),
                &["/location/id"],
                &["/location/name"],
            ),
        )
    },
];

pub fn find(platform_id: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.platform_id == platform_id)
}

/// `<name>.myshopify.com`, lower-cased; anything else (another host, a path, a port) is refused.
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
    use listbackup_domain::platform::{AuthType, CATALOG};

    #[test]
    fn every_oauth_platform_has_a_provider_and_no_other() {
        for platform in CATALOG {
            assert_eq!(
                find(platform.id).is_some(),
                platform.supports(AuthType::Oauth2),
                "{}",
                platform.id
            );
        }
        assert_eq!(PROVIDERS.len(), 9);
    }

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
