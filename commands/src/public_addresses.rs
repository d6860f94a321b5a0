//! A DNS resolver for outbound HTTP clients whose host names come from customers (webhook URLs; platform hosts
//! built from credentials: ActiveCampaign's account URL, Zendesk's subdomain, Mailchimp's data centre…): a name
//! is connected to only at its public addresses, so no customer can reach into ListBackup's own network
//! (loopback, private ranges, link-local cloud metadata services) by registering a name that points there.
//! Addresses are classified by [`listbackup_domain::webhook::is_public`]. IP-address hosts never reach a
//! resolver (reqwest connects to them directly): the callers refuse those where a customer could give one.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use listbackup_domain::webhook::is_public;

/// Resolves through the system resolver (`getaddrinfo`, as reqwest's default does) and keeps the public
/// addresses; a name with none fails to connect (`<name> resolves to no public address`). Names the operator
/// configured (`LISTBACKUP_PLATFORM_<ID>_API_URL` pointing at an emulation on `localhost`, say) are resolved
/// unfiltered.
#[derive(Debug, Clone, Default)]
pub struct PublicAddressesOnly {
    operator_hosts: BTreeSet<String>,
}

impl PublicAddressesOnly {
    /// Filters every name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Filters every name but `hosts` (lower-case host names, as in a URL).
    pub fn except(hosts: impl IntoIterator<Item = String>) -> Self {
        Self {
            operator_hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }
}

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let unfiltered = self.operator_hosts.contains(&host);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| unfiltered || is_public(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    async fn resolve(
        resolver: &PublicAddressesOnly,
        host: &str,
    ) -> Result<Vec<SocketAddr>, String> {
        let name: reqwest::dns::Name = host.parse().unwrap();
        resolver
            .resolve(name)
            .await
            .map(|addrs| addrs.collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_name_of_loopback_addresses_is_refused_unless_the_operator_named_it() {
        let refused = resolve(&PublicAddressesOnly::new(), "localhost")
            .await
            .unwrap_err();
        assert!(
            refused.contains("resolves to no public address"),
            "{refused}"
        );

        let operator = PublicAddressesOnly::except(["LocalHost".to_owned()]);
        let addresses = resolve(&operator, "localhost").await.unwrap();
        assert!(!addresses.is_empty());
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
        // Another name is still filtered.
        let other = PublicAddressesOnly::except(["api.example.test".to_owned()]);
        assert!(resolve(&other, "localhost").await.is_err());
    }
}
