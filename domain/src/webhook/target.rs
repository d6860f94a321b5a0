//! Where a webhook delivers: an HTTPS URL, or an e-mail address as a `mailto:` URL (RFC 6068).
//!
//! A URL the service would POST to is checked against server-side request forgery (OWASP's SSRF prevention
//! cheat sheet): no credentials in it, and no host that names this machine or a private network (loopback,
//! RFC 1918 and RFC 6598 ranges, link-local, IPv6 unique local, `localhost`, `.internal`, `.local`) unless
//! the deployment allows it (`TargetPolicy::allow_private`, for tests and local runs). The sender checks the
//! addresses a name resolves to again at delivery time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// What a deployment accepts as a webhook's target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `http://` URLs and hosts on loopback or private networks (`LISTBACKUP_WEBHOOK_ALLOW_HTTP=true`, refused
    /// in production).
    pub allow_private: bool,
    /// `mailto:` targets: an SMTP server is configured (`LISTBACKUP_SMTP_URL`).
    pub allow_email: bool,
}

/// A checked target: a URL to POST to, or an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    Http(Url),
    Email(String),
}

/// The longest URL accepted, in bytes (what browsers and proxies reliably carry).
pub const MAX_URL_BYTES: usize = 2048;

impl WebhookTarget {
    /// Parses and checks `raw` under `policy`; the error says what is wrong, for the `url` field.
    pub fn parse(raw: &str, policy: TargetPolicy) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_BYTES {
            return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
        }
        let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_private => {}
            "http" => return Err("must be an https:// URL".into()),
            "mailto" if policy.allow_email => return email(&url).map(Self::Email),
            "mailto" => {
                return Err(
                    "e-mail notifications need an SMTP server (LISTBACKUP_SMTP_URL), which is not configured"
                        .into(),
                )
            }
            other => return Err(format!("scheme {other:?} is not supported: use https:// or mailto:")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        if url.fragment().is_some() {
            return Err("must not contain a fragment".into());
        }
        let host = url.host().ok_or("must name a host")?;
        if !policy.allow_private {
            let refused = match host {
                Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
                Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
                Host::Domain(name) => is_local_name(name),
            };
            if refused {
                return Err(
                    "must not point at this machine or a private network (loopback, private, link-local)"
                        .into(),
                );
            }
        }
        Ok(Self::Http(url))
    }

    /// The URL as stored and shown (`mailto:` and the address for e-mail).
    pub fn as_url(&self) -> String {
        match self {
            Self::Http(url) => url.to_string(),
            Self::Email(address) => format!("mailto:{address}"),
        }
    }
}

/// The one address of a `mailto:` URL, without header fields.
fn email(url: &Url) -> Result<String, String> {
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a mailto: URL names one address, without ?headers".into());
    }
    let address = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| "a mailto: address must be UTF-8")?
        .into_owned();
    let (local, domain) = address
        .split_once('@')
        .ok_or("a mailto: URL needs an address (mailto:ops@example.com)")?;
    let valid = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !address.contains(',')
        && address.len() <= 254
        && !address.chars().any(|c| c.is_control() || c.is_whitespace());
    if !valid {
        return Err("a mailto: URL names exactly one e-mail address".into());
    }
    Ok(address)
}

/// Host names that always mean this machine or a private network.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || [".localhost", ".local", ".internal", ".localdomain"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        || !name.contains('.')
}

/// Whether `ip` is a globally routable unicast address: not loopback, unspecified, private (RFC 1918), shared
/// (RFC 6598), link-local (RFC 3927, RFC 4291), unique local (RFC 4193), multicast, broadcast or documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}
