//! HubSpot CRM search paged by keyset, with the record id as the tie-break: any number of records changed,
//! even all at one instant, in one request per page and never past the search API's 10,000-result cap.
//!
//! The rules this follows are the CRM search guide's: "Only one sorting rule can be applied to any search";
//! at most 200 results per page; "The search endpoints are limited to 10,000 total results for any given
//! query. Attempting to page beyond 10,000 will result in a 400 error"; filters in one group are ANDed (at most
//! six per group); date values are epoch milliseconds as strings.
//!
//! - **Range**: `<property> GTE from`, sorted by the property. The page's records before its last instant are
//!   complete; the next request starts at that last instant again (its records already fetched are dropped
//!   by id), so a page never depends on `after` offsets into a result set that changes meanwhile.
//! - **Tie**: when a whole page shares one instant, that instant is paged on its own: `<property> EQ T AND
//!   hs_object_id GT <last id>`, sorted by `hs_object_id`, until it runs out; then Range continues from
//!   `T + 1 ms` (`GT T`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::Fetched;

/// Where a search answer says more results follow (the CRM search API's `paging.next`).
pub(crate) const MORE: &str = "/paging/next/after";

/// Where a search listing stands: the next request's query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub(crate) enum SearchPosition {
    /// `<property> GTE from_ms`, ascending by the property; `seen` were fetched already at exactly `from_ms`.
    Range { from_ms: i64, seen: Vec<String> },
    /// `<property> EQ at_ms AND hs_object_id GT after_id`, ascending by `hs_object_id`; `seen` were fetched
    /// already at `at_ms` (by a Range page, in no particular id order).
    Tie {
        at_ms: i64,
        after_id: u64,
        seen: Vec<String>,
    },
}

/// What a page of search results means.
#[derive(Debug)]
pub(crate) struct SearchStep {
    /// Per record: whether it is new to this fetch.
    pub keep: Vec<bool>,
    /// The next query, or `None` when the changes are exhausted.
    pub next: Option<SearchPosition>,
}

impl SearchPosition {
    pub fn start(from_ms: i64) -> Self {
        SearchPosition::Range {
            from_ms,
            seen: Vec::new(),
        }
    }

    /// The request body (`POST /crm/v3/objects/<type>/search`).
    pub fn body(&self, property: &str, id_property: &str, limit: u32) -> Value {
        let filter = |name: &str, operator: &str, value: String| json!({"propertyName": name, "operator": operator, "value": value});
        let sort = |name: &str| json!([{"propertyName": name, "direction": "ASCENDING"}]);
        let (filters, sorts) = match self {
            SearchPosition::Range { from_ms, .. } => (
                vec![filter(property, "GTE", from_ms.to_string())],
                sort(property),
            ),
            SearchPosition::Tie {
                at_ms, after_id, ..
            } => (
                vec![
                    filter(property, "EQ", at_ms.to_string()),
                    filter(id_property, "GT", after_id.to_string()),
                ],
                sort(id_property),
            ),
        };
        json!({"filterGroups": [{"filters": filters}], "sorts": sorts, "limit": limit})
    }

    /// What identifies the query (not what was seen): a query asked twice means the listing goes in circles.
    pub fn key(&self) -> (bool, i64, u64) {
        match self {
            SearchPosition::Range { from_ms, .. } => (false, *from_ms, 0),
            SearchPosition::Tie {
                at_ms, after_id, ..
            } => (true, *at_ms, *after_id),
        }
    }

    /// The query in words, for error messages.
    pub fn describe(&self, property: &str, id_property: &str) -> String {
        match self {
            SearchPosition::Range { from_ms, .. } => format!("{property} >= {from_ms}"),
            SearchPosition::Tie {
                at_ms, after_id, ..
            } => format!("{property} = {at_ms} and {id_property} > {after_id}"),
        }
    }

    /// Interprets a page of results of this query; `more` is whether the answer had `paging.next`. Every
    /// result needs an id and a change time (`Err` names what is missing): the keyset is made of them.
    pub fn advance(&self, page: &[Fetched], more: bool) -> Result<SearchStep, String> {
        let mut keys = Vec::with_capacity(page.len());
        for record in page {
            let id = record.id.as_deref().ok_or("a search result has no `id`")?;
            let at = record
                .time
                .ok_or("a search result has no `updatedAt`")?
                .timestamp_millis();
            keys.push((id, at));
        }
        Ok(match self {
            SearchPosition::Range { from_ms, seen } => {
                let keep = keys
                    .iter()
                    .map(|(id, at)| !(at == from_ms && seen.iter().any(|s| s == id)))
                    .collect();
                let next = match (more, keys.first(), keys.last()) {
                    (true, Some(&(_, first)), Some(&(_, last))) => {
                        // Ids already fetched at `last`: from an earlier page if it is the same instant.
                        let mut seen_at_last: Vec<String> = if last == *from_ms {
                            seen.clone()
                        } else {
                            Vec::new()
                        };
                        seen_at_last.extend(
                            keys.iter()
                                .filter(|(_, at)| *at == last)
                                .map(|(id, _)| (*id).to_owned()),
                        );
                        Some(if first == last {
                            // A whole page at one instant: page through it by id.
                            SearchPosition::Tie {
                                at_ms: last,
                                after_id: 0,
                                seen: seen_at_last,
                            }
                        } else {
                            SearchPosition::Range {
                                from_ms: last,
                                seen: seen_at_last,
                            }
                        })
                    }
                    _ => None,
                };
                SearchStep { keep, next }
            }
            SearchPosition::Tie { at_ms, seen, .. } => {
                let keep = keys
                    .iter()
                    .map(|(id, _)| !seen.iter().any(|s| s == id))
                    .collect();
                let last_id = match keys.last() {
                    Some((id, _)) => Some(
                        id.parse::<u64>()
                            .map_err(|_| format!("a search result's id `{id}` is not a number"))?,
                    ),
                    None => None,
                };
                let next = match last_id {
                    Some(after_id) if more => SearchPosition::Tie {
                        at_ms: *at_ms,
                        after_id,
                        seen: seen.clone(),
                    },
                    // The instant is exhausted: everything after it.
                    _ => SearchPosition::start(at_ms + 1),
                };
                SearchStep {
                    keep,
                    next: Some(next),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn record(id: u64, ms: i64) -> Fetched {
        Fetched {
            raw: RawValue::from_string("{}".into()).unwrap(),
            id: Some(id.to_string()),
            time: chrono::DateTime::from_timestamp_millis(ms),
            has_tag: false,
        }
    }

    #[test]
    fn range_pages_continue_from_their_last_instant_and_drop_what_was_seen_there() {
        let start = SearchPosition::start(1000);
        let step = start
            .advance(&[record(7, 1000), record(3, 1005), record(9, 1005)], true)
            .unwrap();
        assert_eq!(step.keep, [true, true, true]);
        let next = step.next.unwrap();
        assert_eq!(
            next,
            SearchPosition::Range {
                from_ms: 1005,
                seen: vec!["3".into(), "9".into()]
            }
        );
        let body = next.body("lastmodifieddate", "hs_object_id", 200);
        assert_eq!(body["filterGroups"][0]["filters"][0]["value"], "1005");
        assert_eq!(body["sorts"].as_array().unwrap().len(), 1);
        let step = next
            .advance(&[record(9, 1005), record(3, 1005), record(4, 1010)], false)
            .unwrap();
        assert_eq!(step.keep, [false, false, true]);
        assert_eq!(step.next, None, "no paging.next: done");
    }

    #[test]
    fn a_page_at_one_instant_pages_that_instant_by_id_then_moves_past_it() {
        let step = SearchPosition::start(1000)
            .advance(&[record(50, 2000), record(10, 2000)], true)
            .unwrap();
        let tie = step.next.unwrap();
        assert_eq!(tie.key(), (true, 2000, 0));
        let body = tie.body("hs_lastmodifieddate", "hs_object_id", 200);
        assert_eq!(
            body["filterGroups"][0]["filters"],
            json!([{"propertyName": "hs_lastmodifieddate", "operator": "EQ", "value": "2000"},
                   {"propertyName": "hs_object_id", "operator": "GT", "value": "0"}])
        );
        assert_eq!(
            body["sorts"],
            json!([{"propertyName": "hs_object_id", "direction": "ASCENDING"}])
        );
        // By id now: the two seen on the Range page are dropped wherever they come.
        let step = tie
            .advance(
                &[record(10, 2000), record(20, 2000), record(50, 2000)],
                true,
            )
            .unwrap();
        assert_eq!(step.keep, [false, true, false]);
        let tie = step.next.unwrap();
        assert_eq!(tie.key(), (true, 2000, 50));
        let step = tie.advance(&[record(60, 2000)], false).unwrap();
        assert_eq!(step.keep, [true]);
        assert_eq!(step.next.unwrap(), SearchPosition::start(2001));
    }

    #[test]
    fn results_without_keys_are_refused() {
        let mut no_time = record(1, 0);
        no_time.time = None;
        assert!(SearchPosition::start(0)
            .advance(&[no_time], true)
            .unwrap_err()
            .contains("updatedAt"));
    }
}
