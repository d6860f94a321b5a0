//! Parsing the credential fields a customer submits for an API-key connection, against the catalog.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{CredentialFieldType, FieldShape, Platform};

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
            if let Err(expected) = field.shape.check(text) {
                problems.push(problem(name, &expected));
                continue;
            }
            let shape_ok = match field.field_type {
                CredentialFieldType::String => true,
                CredentialFieldType::Url => is_http_url(text),
                CredentialFieldType::Email => is_email(text),
            };
            if !shape_ok {
                let expected = match field.field_type {
                    CredentialFieldType::Url => "must be an http(s) URL",
                    _ => "must be an email address",
                };
                problems.push(problem(name, expected));
                continue;
            }
            if !field.secret {
                settings.insert(name.clone(), text.to_owned());
            }
            all.insert(name.clone(), text.to_owned());
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

impl FieldShape {
    /// `Err` says what the value must look like.
    pub(super) fn check(self, text: &str) -> Result<(), String> {
        let label = |t: &str| {
            !t.is_empty()
                && t.len() <= 63
                && !t.starts_with('-')
                && !t.ends_with('-')
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let ok = match self {
            FieldShape::Any => true,
            FieldShape::Prefixed(prefixes) => prefixes.iter().any(|p| text.starts_with(p)),
            FieldShape::HostLabel => label(text),
            FieldShape::ShopDomain => super::validate_shop(text).is_some(),
            FieldShape::DataCenterSuffix => text.rsplit_once('-').is_some_and(|(key, dc)| {
                !key.is_empty() && !dc.is_empty() && dc.bytes().all(|b| b.is_ascii_alphanumeric())
            }),
            FieldShape::Identifier => text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            FieldShape::Any => unreachable!("anything is fine"),
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

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    matches!(rest, Some(host) if !host.is_empty() && !host.starts_with('/') && !host.contains(char::is_whitespace))
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
}
