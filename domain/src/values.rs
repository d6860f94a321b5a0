//! Small value types shared by aggregates: parse once at the edge, then trust.

use serde::{Deserialize, Serialize};

/// An account id as it comes from the token: non-empty, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// 1 to 128 bytes without control characters: it keys rows, event metadata, storage paths and NATS
    /// subjects, none of which can hold a NUL (PostgreSQL text cannot) or should hold a line break. It is
    /// taken as given, never trimmed, so one with whitespace around it is refused rather than becoming an
    /// account of its own beside the one without (`" acme"` is not `acme`, and is not made it either).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 128 {
            return Err("an account id is 1 to 128 characters".into());
        }
        if raw.chars().any(char::is_control) {
            return Err("an account id has no control characters".into());
        }
        if raw.trim() != raw {
            return Err("an account id has no leading or trailing whitespace".into());
        }
        if raw.chars().any(is_invisible) {
            return Err("an account id has no invisible characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that show nothing yet make two ids differ (Unicode format characters an id could carry
/// unseen): the soft hyphen, zero-width spaces and joiners, bidirectional marks and overrides, word joiners
/// and invisible operators, and the byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// An account's own stream (its erasure) is named by the account id itself.
impl crate::StreamId for AccountId {
    fn stream_id(&self) -> String {
        self.0.clone()
    }
}

/// A human-chosen display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reference to a secret held in the credential vault: which master key sealed it, and a keyed fingerprint
/// that tells two secrets apart without revealing either. This, never the secret, is what events carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRef {
    pub key_id: String,
    pub fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Shop  ").unwrap().as_str(), "Shop");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(201)).is_err());
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn account_ids_are_bounded() {
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse(&"a".repeat(129)).is_err());
        for padded in [" acme", "acme ", "\u{a0}acme", "acme\u{3000}"] {
            assert!(AccountId::parse(padded).is_err(), "{padded:?}");
        }
        assert!(AccountId::parse("acme corp").is_ok());
        assert_eq!(AccountId::parse("acme").unwrap().as_str(), "acme");
        // An id that looks like another is refused: invisible characters anywhere.
        for hidden in [
            "ac\u{200B}me",
            "acme\u{FEFF}x",
            "a\u{202E}cme",
            "ac\u{00AD}me",
            "a\u{2060}b",
        ] {
            assert!(AccountId::parse(hidden).is_err(), "{hidden:?}");
        }
        assert!(AccountId::parse("café").is_ok());
    }
}
