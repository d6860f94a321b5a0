//! Demo mode (`LISTBACKUP_DEMO=true`): the platforms' emulations (the `listbackup-emulators` crate) served on
//! loopback inside `listbackup serve`, each with a demo data set, so a newcomer without any platform's
//! credentials can connect, back up and download.
//!
//! Every API-key platform of the catalog is emulated. Its demo credentials are the catalog's
//! ([`Platform::demo_credentials`]: `{"secretKey": "sk_demo"}` for Stripe, `{"apiKey": "demo"}` for Keap…),
//! which `GET /platforms` shows while demo mode is on. A connection created with exactly those, while demo
//! mode is on, is a demo connection and only ever reaches the emulation; any other credentials make a real
//! connection, which never does (see `listbackup_commands::platform_client::DEMO_CONNECTION`).

use listbackup_commands::platform_client::DemoPlatforms;
use listbackup_domain::platform::{Platform, CATALOG};
use listbackup_emulators::{PlatformApi, ServeOptions};

/// The fewest and most records a demo data type holds.
const RECORDS: std::ops::Range<u64> = 300..2_500;
/// Records of a data type whose records are parents of other data types' lists (Shopify's locations,
/// price rules and blogs; Mailchimp's audiences; Zendesk's tickets of their comments): usually few in a real
/// account, and each costs a request per child data type within the platform's rate limit (Shopify's is 2
/// requests a second).
const PARENTS: u64 = 25;

/// The emulations, running until dropped.
pub struct Demo {
    api: PlatformApi,
    routing: DemoPlatforms,
}

impl Demo {
    /// Starts the emulation on a free loopback port on the current runtime, accepts each API-key platform's
    /// demo credentials and seeds every data type ListBackup backs up.
    pub async fn start() -> std::io::Result<Self> {
        let api = PlatformApi::serve(ServeOptions {
            port: 0,
            workers: 1,
        })
        .await?;
        let mut routing = DemoPlatforms::default();
        for platform in CATALOG {
            let Some(credentials) = platform.demo_credentials() else {
                continue;
            };
            api.accept_credentials(
                platform.id,
                serde_json::to_value(&credentials).expect("a map of strings is JSON"),
            );
            for (data_type, records) in data_set(platform) {
                api.seed(platform.id, data_type, records);
            }
            routing = routing.with_api_url(platform.id, &api.api_url(platform.id));
        }
        Ok(Self { api, routing })
    }

    /// Where demo connections go, for `PlatformEndpoints::with_demo`.
    pub fn routing(&self) -> DemoPlatforms {
        self.routing.clone()
    }

    /// The emulation's base URL (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> &str {
        &self.api.base_url
    }
}

/// The demo data set of a platform: each data type that can be backed up with its number of records, a
/// fixed number in [`RECORDS`] (hundreds to a few thousand, the same every start), or [`PARENTS`] for a data
/// type other data types are listed per record of.
pub fn data_set(platform: &Platform) -> Vec<(&'static str, u64)> {
    let parents: Vec<&str> = platform
        .data_types
        .iter()
        .filter_map(|d| d.listing.as_ref()?.per_parent.map(|p| p.data_type))
        .collect();
    platform
        .data_types
        .iter()
        .filter(|d| d.listing.is_some())
        .map(|d| {
            let records = if parents.contains(&d.name) {
                PARENTS
            } else {
                // FNV-1a of the name: a stable size per data type, spread over the range.
                let hash = format!("{}/{}", platform.id, d.name)
                    .bytes()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                    });
                RECORDS.start + hash % (RECORDS.end - RECORDS.start)
            };
            (d.name, records)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_type_that_can_be_backed_up_has_a_demo_data_set() {
        for platform in CATALOG.iter().filter(|p| p.demo_credentials().is_some()) {
            let set = data_set(platform);
            assert!(!set.is_empty(), "{}", platform.id);
            for (data_type, records) in set {
                assert!(
                    records == PARENTS || RECORDS.contains(&records),
                    "{}/{data_type}: {records}",
                    platform.id
                );
            }
        }
    }
}
