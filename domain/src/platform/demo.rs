//! What demo mode needs from the catalog: one documented credential set per API-key platform, derived from
//! the platform's connect form (so a platform added to the catalog has one without a change here), and the
//! path part of each API base URL (what an API URL override keeps).
//!
//! Pure: the demo's emulations and the routing of demo connections live in the service, not here.

use std::collections::BTreeMap;

use super::{AuthType, CredentialFieldType, FieldShape, Platform};

/// The word every demo credential is made of.
pub const DEMO_WORD: &str = "demo";

impl Platform {
    /// The demo credential set of this platform's API-key connect form: every required field with a value of
    /// the field's shape built from `demo` (`{"secretKey": "sk_demo"}` for Stripe, `{"apiKey": "demo"}` for
    /// Keap, `{"apiKey": "demo-us1"}` for Mailchimp). `None` for a platform without API-key connections.
    ///
    /// Only while demo mode is on does a connection created with exactly this set reach the demo's emulation
    /// of the platform; any other credentials are a real connection.
    pub fn demo_credentials(&self) -> Option<BTreeMap<String, String>> {
        if !self.supports(AuthType::ApiKey) {
            return None;
        }
        let value = |shape: FieldShape, field_type: CredentialFieldType| match field_type {
            CredentialFieldType::Email => format!("{DEMO_WORD}@example.com"),
            // The account `demo` on the platform's first documented domain: a URL must name one of them
            // (`FieldShape::AccountUrl`), and only the demo mark, never the URL, routes to the emulation.
            CredentialFieldType::Url => match shape {
                FieldShape::AccountUrl(domains) => {
                    format!(
                        "https://{DEMO_WORD}.{}",
                        domains.first().copied().unwrap_or("")
                    )
                }
                _ => format!("https://{DEMO_WORD}"),
            },
            CredentialFieldType::String => match shape {
                FieldShape::Prefixed(prefixes) => {
                    format!("{}{DEMO_WORD}", prefixes.first().copied().unwrap_or(""))
                }
                FieldShape::ShopDomain => format!("{DEMO_WORD}.myshopify.com"),
                FieldShape::DataCenterSuffix => format!("{DEMO_WORD}-us1"),
                FieldShape::Any
                | FieldShape::HostLabel
                | FieldShape::Identifier
                | FieldShape::AccountUrl(_) => DEMO_WORD.to_owned(),
            },
        };
        Some(
            self.credential_fields
                .iter()
                .filter(|field| field.required)
                .map(|field| (field.name.to_owned(), value(field.shape, field.field_type)))
                .collect(),
        )
    }

    /// The path of the catalog's API base URL, after its scheme and host (or after a leading `{placeholder}`
    /// that holds a whole origin): `/v1` for Stripe, `/crm/rest/v1` for Keap, `/api/3` for ActiveCampaign,
    /// `/v3/company/{realmId}` for QuickBooks, empty for HubSpot. An API URL override
    /// (`LISTBACKUP_PLATFORM_<ID>_API_URL`) replaces what comes before it.
    pub fn api_path(&self) -> &'static str {
        let template = self.api_base_url;
        let after_origin = if template.starts_with('{') {
            template.find('}').map(|end| &template[end + 1..])
        } else {
            template
                .split_once("://")
                .map(|(_, rest)| rest.find('/').map_or("", |slash| &rest[slash..]))
        };
        after_origin.unwrap_or("").trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::super::{find, CATALOG};
    use super::*;

    #[test]
    fn every_api_key_platform_has_demo_credentials_its_form_accepts() {
        for platform in CATALOG {
            match platform.demo_credentials() {
                None => assert!(!platform.supports(AuthType::ApiKey), "{}", platform.id),
                Some(credentials) => {
                    let submitted = credentials
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    let parsed = platform.parse_credentials(&submitted).unwrap_or_else(|p| {
                        panic!("{}: the demo credentials are refused: {p:?}", platform.id)
                    });
                    assert_eq!(parsed.all, credentials, "{}", platform.id);
                }
            }
        }
        assert_eq!(
            find("stripe").unwrap().demo_credentials().unwrap(),
            BTreeMap::from([("secretKey".to_owned(), "sk_demo".to_owned())])
        );
    }

    #[test]
    fn the_api_path_is_what_follows_the_origin() {
        let path = |id| find(id).unwrap().api_path();
        assert_eq!(path("stripe"), "/v1");
        assert_eq!(path("keap"), "/crm/rest/v1");
        assert_eq!(path("hubspot"), "");
        assert_eq!(path("activecampaign"), "/api/3");
        assert_eq!(path("mailchimp"), "/3.0");
        assert_eq!(path("quickbooks"), "/v3/company/{realmId}");
        assert_eq!(path("shopify"), "/admin/api/2026-10");
    }
}
