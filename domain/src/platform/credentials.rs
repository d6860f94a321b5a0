//! Parsing the credential fields a customer submits for an API-key connection, against the catalog.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{CredentialField, CredentialFieldType, FieldShape, Platform};

/// Credentials that match the platform's fields: every value a non-empty string of the right shape.
/// `settings` are the non-secret fields (safe to record and show); `all` is what the vault seals.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub settings: BTreeMap<String, String>,
    pub all: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret values must never reach a log line, even through a stray `{:?}`.
        f.debug_struct("Credentials")
            .field("settings", &self.settings)
            .field("fields", &self.all.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    pub fn field_names(&self) -> Vec<String> {
        self.all.keys().cloned().collect()
    }
}

/// One problem with one submitted field; `field` is relative to the credentials object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProblem {
    pub field: String,
    pub message: String,
}

const MAX_VALUE_LEN: usize = 4096;

impl Platform {
    /// Checks submitted credentials against this platform's API-key fields, reporting every problem at once.
    pub fn parse_credentials(
        &self,
        submitted: &serde_json::Map<String, Value>,
    ) -> Result<Credentials, Vec<CredentialProblem>> {
        let mut problems = Vec::new();
        let mut all = BTreeMap::new();
        let mut settings = BTreeMap::new();
        let problem = |field: &str, message: &str| CredentialProblem {
            field: field.to_owned(),
            message: message.to_owned(),
        };
        for (name, value) in submitted {
            let Some(field) = self.credential_field(name) else {
                problems.push(problem(name, "is not a credential field of this platform"));
                continue;
            };
            let Some(text) = value.as_str() else {
                problems.push(problem(name, "must be a string"));
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                problems.push(problem(name, "must not be empty"));
                continue;
            }
            if text.len() > MAX_VALUE_LEN {
                problems.push(problem(name, "is too long"));
                continue;
            }
            // Values go into HTTP headers and URLs: a NUL, a line break or a tab would be refused by the HTTP
            // client (or worse, split a header), so it is refused here, by name, not at first use.
            if text.chars().any(char::is_control) {
                problems.push(problem(
                    name,
                    "must not contain control characters (line breaks, tabs, NUL)",
                ));
                continue;
            }
            if field.secret && !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                problems.push(problem(
                    name,
                    "must be printable ASCII, as the platform issues it",
                ));
                continue;
            }
            let text = match field.parse_value(text) {
                Ok(text) => text,
                Err(expected) => {
                    problems.push(problem(name, &expected));
                    continue;
                }
            };
            if !field.secret {
                settings.insert(name.clone(), text.clone());
            }
            all.insert(name.clone(), text);
        }
        for field in self.credential_fields.iter().filter(|f| f.required) {
            if !submitted.contains_key(field.name) {
                problems.push(problem(field.name, "is required"));
            }
        }
        if problems.is_empty() {
            Ok(Credentials { settings, all })
        } else {
            Err(problems)
        }
    }
}

impl CredentialField {
    /// A submitted value (trimmed, printable) checked against the field's type and shape: the value as it is
    /// kept (an account URL normalised to its origin), or what it must look like. The connect form and the
    /// credential update parse with it, and so does every request built from stored credentials, so a value
    /// stored before a rule tightened is refused at its use too.
    pub fn parse_value(&self, text: &str) -> Result<String, String> {
        let value = self.shape.parse(text)?;
        match self.field_type {
            CredentialFieldType::String => Ok(value),
            CredentialFieldType::Email if is_email(&value) => Ok(value),
            CredentialFieldType::Email => Err("must be an email address".to_owned()),
            // A URL names a host the service will connect to: only a host the platform documents, never one
            // the customer picks (a loopback emulation, a metadata service, a database port).
            CredentialFieldType::Url if matches!(self.shape, FieldShape::AccountUrl(_)) => {
                Ok(value)
            }
            CredentialFieldType::Url => {
                Err("cannot be checked: the platform documents no API host for it".to_owned())
            }
        }
    }
}

impl FieldShape {
    /// The value as it is kept (only an [`FieldShape::AccountUrl`] changes: to its origin, lower-cased), or
    /// what it must look like.
    pub(super) fn parse(self, text: &str) -> Result<String, String> {
        let ok = match self {
            FieldShape::Any => true,
            FieldShape::Prefixed(prefixes) => prefixes.iter().any(|p| text.starts_with(p)),
            FieldShape::HostLabel => is_label(text),
            FieldShape::ShopDomain => super::validate_shop(text).is_some(),
            FieldShape::DataCenterSuffix => text.rsplit_once('-').is_some_and(|(key, dc)| {
                !key.is_empty() && !dc.is_empty() && dc.bytes().all(|b| b.is_ascii_alphanumeric())
            }),
            FieldShape::Identifier => text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            FieldShape::AccountUrl(domains) => return account_url(text, domains),
        };
        if ok {
            return Ok(text.to_owned());
        }
        Err(match self {
            FieldShape::Any | FieldShape::AccountUrl(_) => unreachable!("answered above"),
            FieldShape::Prefixed(prefixes) => format!("must start with {}", prefixes.join(" or ")),
            FieldShape::HostLabel => {
                "must be one host name label: letters, digits and hyphens".to_owned()
            }
            FieldShape::ShopDomain => {
                "must be a shop domain such as `your-store.myshopify.com`".to_owned()
            }
            FieldShape::DataCenterSuffix => {
                "must end with its data centre, such as `-us21`".to_owned()
            }
            FieldShape::Identifier => "must be letters, digits, `-` and `_` only".to_owned(),
        })
    }
}

/// One DNS label: 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.
fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `https://<account>.<domain>` with `domain` one of `domains` ([`FieldShape::AccountUrl`]), as
/// `https://<host>` lower-cased; otherwise what is wrong with it.
fn account_url(text: &str, domains: &[&str]) -> Result<String, String> {
    let form = || {
        let hosts: Vec<String> = domains
            .iter()
            .map(|domain| format!("`https://<account>.{domain}`"))
            .collect();
        format!("must be the account's API URL, {}", hosts.join(" or "))
    };
    let url = url::Url::parse(text).map_err(|_| form())?;
    if url.scheme() != "https" {
        return Err(format!("{}: https only", form()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{}: no user name or password", form()));
    }
    // `Url::port` hides a port that is the scheme's default (`:443`): any port written is refused.
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    let after_ip6 = authority.rsplit(']').next().unwrap_or("");
    if url.port().is_some() || after_ip6.contains(':') {
        return Err(format!("{}: no port", form()));
    }
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host,
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(format!("{}: a host name, not an IP address", form()))
        }
        None => return Err(form()),
    };
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{}: no path, query or fragment", form()));
    }
    let documented = domains
        .iter()
        .any(|domain| match domain.split_once(REGION) {
            // `api-<region>.com`: the region one label part of letters then digits (`us1`, `eu1`).
            Some((before, after)) => host
                .strip_suffix(after)
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(account, label)| {
                    is_label(account) && label.strip_prefix(before).is_some_and(is_region)
                }),
            None => host
                .strip_suffix(domain)
                .and_then(|account| account.strip_suffix('.'))
                .is_some_and(is_label),
        });
    if !documented {
        return Err(form());
    }
    Ok(format!("https://{host}"))
}

/// The placeholder of a documented domain for a region's part of it ([`FieldShape::AccountUrl`]:
/// `api-<region>.com`).
pub const REGION: &str = "<region>";

/// A region as platforms number them: lower-case letters, then digits (`us1`, `eu1`, `au2`).
fn is_region(text: &str) -> bool {
    let digits = text.trim_start_matches(|c: char| c.is_ascii_lowercase());
    digits.len() < text.len()
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && text.len() <= 16
}

fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::platform::find;

    fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let zendesk = find("zendesk").unwrap();
        let problems = zendesk
            .parse_credentials(&object(
                json!({"email": 5, "bogus": "x", "subdomain": "  "}),
            ))
            .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"email"), "{problems:?}");
        assert!(fields.contains(&"bogus"), "{problems:?}");
        assert!(fields.contains(&"subdomain"), "{problems:?}");
        assert!(fields.contains(&"apiToken"), "{problems:?}");
    }

    #[test]
    fn secret_fields_are_kept_out_of_settings_and_debug() {
        let stripe = find("stripe").unwrap();
        let secret_field = stripe
            .credential_fields
            .iter()
            .find(|f| f.secret)
            .unwrap()
            .name;
        let parsed = stripe
            .parse_credentials(&object(json!({ secret_field: "sk_test_DISTINCTIVE" })))
            .unwrap();
        assert!(parsed.settings.is_empty());
        assert_eq!(parsed.all[secret_field], "sk_test_DISTINCTIVE");
        assert!(!format!("{parsed:?}").contains("DISTINCTIVE"));
    }

    #[test]
    fn values_that_cannot_be_sent_or_cannot_work_are_refused_by_name() {
        let field_of = |platform: &str, value: serde_json::Value| {
            let platform = find(platform).unwrap();
            match platform.parse_credentials(&object(value)) {
                Ok(_) => Vec::new(),
                Err(problems) => problems.into_iter().map(|p| p.field).collect(),
            }
        };
        for bad in [
            "sk_test_a\u{0}b",
            "sk_test_a\r\nX-Injected: 1",
            "sk_test_\tx",
            "pk_test_x",
            "sk_tést",
        ] {
            assert_eq!(
                field_of("stripe", json!({ "secretKey": bad })),
                ["secretKey"],
                "{bad:?}"
            );
        }
        assert!(field_of("stripe", json!({"secretKey": "rk_live_ok"})).is_empty());
        assert_eq!(
            field_of("mailchimp", json!({"apiKey": "0123abcd"})),
            ["apiKey"]
        );
        assert!(field_of("mailchimp", json!({"apiKey": "0123abcd-us21"})).is_empty());
        assert_eq!(
            field_of(
                "zendesk",
                json!({"subdomain": "acme.evil.com/x", "email": "a@b.co", "apiToken": "t"})
            ),
            ["subdomain"]
        );
        assert_eq!(
            field_of(
                "shopify",
                json!({"shop": "acme.example.com", "adminApiAccessToken": "shpat_x"})
            ),
            ["shop"]
        );
        assert_eq!(
            field_of(
                "gohighlevel",
                json!({"locationId": "../x", "privateIntegrationToken": "pit-x"})
            ),
            ["locationId"]
        );
    }

    #[test]
    fn an_account_url_is_an_https_origin_on_a_documented_domain() {
        let activecampaign = find("activecampaign").unwrap();
        let api_url = activecampaign.credential_field("apiUrl").unwrap();
        for (given, kept) in [
            ("https://acme.api-us1.com", "https://acme.api-us1.com"),
            ("https://acme.api-us1.com/", "https://acme.api-us1.com"),
            ("https://ACME-2.Api-US1.com", "https://acme-2.api-us1.com"),
            (
                "https://acme.activehosted.com",
                "https://acme.activehosted.com",
            ),
            // Another region's API URL, as the Developer tab shows it.
            ("https://acme.api-eu1.com", "https://acme.api-eu1.com"),
            ("https://Acme.API-AU12.com/", "https://acme.api-au12.com"),
        ] {
            assert_eq!(api_url.parse_value(given).as_deref(), Ok(kept), "{given}");
        }
        for (bad, why) in [
            // The audit's: the demo's emulation on loopback, a metadata service, a database port.
            ("http://127.0.0.1:41511/activecampaign", "https only"),
            ("https://127.0.0.1:41511/activecampaign", "no port"),
            ("http://169.254.169.254/latest", "https only"),
            ("https://169.254.169.254", "not an IP address"),
            ("https://127.1", "not an IP address"),
            ("https://[::1]", "not an IP address"),
            ("http://127.0.0.1:5432", "https only"),
            ("http://acme.api-us1.com", "https only"),
            ("ftp://acme.api-us1.com", "https only"),
            (
                "https://user:pw@acme.api-us1.com",
                "no user name or password",
            ),
            (
                "https://acme.api-us1.com@evil.example",
                "no user name or password",
            ),
            ("https://acme.api-us1.com:8443", "no port"),
            ("https://acme.api-us1.com:443", "no port"),
            ("https://acme.api-us1.com/api/3", "no path"),
            ("https://acme.api-us1.com/?x=1", "no path, query"),
            ("https://acme.api-us1.com#x", "no path, query or fragment"),
            ("https://acme.api-us1.com\\@evil.example", "no path"),
            // Hosts that are not `<account>.<documented domain>`.
            ("https://api-us1.com", "API URL"),
            ("https://a.b.api-us1.com", "API URL"),
            ("https://acme.api-us1.com.evil.example", "API URL"),
            ("https://acme.api-us1.com.", "API URL"),
            ("https://acmeapi-us1.com", "API URL"),
            ("https://acme.api-eu.com", "API URL"),
            ("https://acme.api-1.com", "API URL"),
            ("https://acme.api-eu1x.com", "API URL"),
            ("https://acme.api-.com", "API URL"),
            ("https://api-eu1.com", "API URL"),
            ("https://a.b.api-eu1.com", "API URL"),
            ("https://acme.api-eu1.com.evil.example", "API URL"),
            ("https://acme.api-eu1.net", "API URL"),
            ("https://localhost", "API URL"),
            ("https://-acme.api-us1.com", "API URL"),
            ("acme.api-us1.com", "API URL"),
            ("https://", "API URL"),
        ] {
            let refused = api_url.parse_value(bad).expect_err(bad);
            assert!(refused.contains(why), "{bad}: {refused}");
            assert!(
                refused.contains("`https://<account>.api-us1.com`"),
                "{bad}: the answer shows the form: {refused}"
            );
        }
    }

    #[test]
    fn account_urls_are_refused_by_name_and_kept_normalised() {
        let activecampaign = find("activecampaign").unwrap();
        let problems = activecampaign
            .parse_credentials(&object(
                json!({"apiUrl": "http://127.0.0.1:41511/activecampaign", "apiKey": "demo"}),
            ))
            .unwrap_err();
        assert_eq!(
            problems
                .iter()
                .map(|p| p.field.as_str())
                .collect::<Vec<_>>(),
            ["apiUrl"]
        );
        let parsed = activecampaign
            .parse_credentials(&object(
                json!({"apiUrl": " https://Acme.api-us1.com/ ", "apiKey": "k"}),
            ))
            .unwrap();
        assert_eq!(parsed.settings["apiUrl"], "https://acme.api-us1.com");
        assert_eq!(parsed.all["apiUrl"], "https://acme.api-us1.com");
    }

    #[test]
    fn a_url_field_without_documented_domains_is_refused() {
        use crate::platform::{CredentialField, CredentialFieldType, FieldShape};
        let unshaped = CredentialField {
            name: "apiUrl",
            label: "API URL",
            field_type: CredentialFieldType::Url,
            required: true,
            secret: false,
            shape: FieldShape::Any,
        };
        assert!(unshaped.parse_value("https://acme.api-us1.com").is_err());
    }
}
