//! Webhook signatures: Stripe's scheme. Each delivery carries
//!
//! ```text
//! Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//! ```
//!
//! where the HMAC-SHA256 (RFC 2104) is keyed with the webhook's whole signing secret (`whsec_…`, as UTF-8
//! bytes) over the signed payload `"{t}.{body}"`: the timestamp, a full stop, and the exact bytes of the
//! request body. A receiver recomputes it over the body it received, compares in constant time with each
//! `v1` of the header (there may be more than one while secrets rotate), and rejects a timestamp more than
//! [`TOLERANCE_SECS`] away from its clock, which stops replays. [`verify`] is that check.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a receiver should accept a signature's timestamp from its own clock: 5 minutes, Stripe's default.
pub const TOLERANCE_SECS: i64 = 300;

/// The header's name.
pub const HEADER: &str = "Webhook-Signature";

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Webhook-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the header has no t= timestamp or no v1= signature")]
    Malformed,
    #[error("the timestamp is more than {TOLERANCE_SECS} s away from now")]
    OutsideTolerance,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// What a receiver does: checks `header` (a `Webhook-Signature` value) against `body` and `secret`, with the
/// timestamp within `tolerance_secs` of `now` (unix seconds). The comparison is constant-time.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::OutsideTolerance);
    }
    signatures
        .iter()
        .any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok())
        .then_some(())
        .ok_or(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let header = sign("whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        let ok = |secret, body: &[u8], now| verify(secret, &header, body, now, TOLERANCE_SECS);
        assert_eq!(ok("whsec_test", b"{\"a\":1}", 1_700_000_100), Ok(()));
        assert_eq!(
            ok("whsec_other", b"{\"a\":1}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok("whsec_test", b"{\"a\":2}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok("whsec_test", b"{\"a\":1}", 1_700_000_301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify("whsec_test", "v1=00", b"", 0, TOLERANCE_SECS),
            Err(SignatureError::Malformed)
        );
    }
}
