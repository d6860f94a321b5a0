//! Where an incremental run starts, and which records the previous backup already holds.
//!
//! A data type's requests start at its cursor minus a lookback window ([`listbackup_domain::platform::IncrementalFetch`]):
//! platforms make some records visible only after their change time (Stripe's event log and balance
//! transactions; HubSpot's search index), and a run that asked from the cursor exactly would never see those.
//! Records the window brings back a second time are dropped by `(id, change time)`: the cursor remembers every
//! record changed in the window before its newest change. Matching the change time as well as the id keeps an
//! update of a mutable record (HubSpot, Keap) made inside the window: same id, a later time, a new version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The cursor an incremental data type hands from one backup to the next (stored in `JobSucceeded`,
/// `SyncFinished` and the manifest), as JSON:
///
/// ```json
/// {"field": "created", "since": "2024-01-01T00:00:09Z", "seenIds": ["evt_9a", "evt_9b"],
///  "recent": [{"at": "2024-01-01T00:00:05Z", "ids": ["evt_5"]}]}
/// ```
///
/// `since` is the newest change the backup holds and `seenIds` the records changed at exactly that instant:
/// the shape of cursors written before the lookback window existed, which still work (their `recent` is
/// empty, so the first run after the upgrade fetches the records of the window again: duplicates across two
/// backups, never a loss). `recent` lists the other records changed within the data type's lookback window
/// before `since`, grouped by change time, oldest first.
///
/// **Cost per source**: for each incremental data type, about (length of an id + 3) bytes per record changed
/// within the lookback window before its newest change, plus about 40 bytes per distinct change time in that
/// window. Stripe event ids are 28 characters: an account with 1 event/s keeps 300 ids in a 5-minute window,
/// about 9 KiB; HubSpot ids are up to 11 digits, so the 10,050 contacts of a bulk update sharing one instant
/// cost about 140 KiB until a later change moves the window past them. The cursor lives in memory during a
/// run (shared with each page's resume cursor, copied only when it changes) and in the events above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalCursor {
    /// What `since` is about ([`listbackup_domain::platform::IncrementalFetch::cursor_field`]); a cursor for another field is ignored.
    pub field: String,
    /// The latest change the backup holds.
    pub since: DateTime<Utc>,
    /// Ids of the records whose change time is exactly `since`.
    pub seen_ids: Vec<String>,
    /// The records changed within the lookback window before `since`; empty in cursors of older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<SeenAt>,
}

/// Ids of the records that changed at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenAt {
    pub at: DateTime<Utc>,
    pub ids: Vec<String>,
}

/// The working form of an [`IncrementalCursor`]: change time → ids, for lookups and pruning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "IncrementalCursor", from = "IncrementalCursor")]
pub(crate) struct SeenWindow {
    field: String,
    since: DateTime<Utc>,
    seen: BTreeMap<DateTime<Utc>, BTreeSet<String>>,
}

impl SeenWindow {
    pub fn since(&self) -> DateTime<Utc> {
        self.since
    }

    /// Whether the backup that produced this window holds the record `id` as changed at `time`, for a fetch
    /// whose requests start at `start`: anything older than the start is the platform sending more than was
    /// asked (held already, as the run before fetched from an earlier start); inside the window, only the
    /// exact `(id, time)` pairs remembered.
    pub fn holds(&self, time: DateTime<Utc>, id: &str, start: DateTime<Utc>) -> bool {
        time < start || self.seen.get(&time).is_some_and(|ids| ids.contains(id))
    }

    /// Records that `id` changed at `time` was fetched, into `window` (created if absent). Keeps only what
    /// lies within `lookback` of the newest change, so memory is bounded by the records of one window.
    /// Shared windows are copied only when something changes.
    pub fn observe(
        window: &mut Option<Arc<Self>>,
        field: &str,
        time: DateTime<Utc>,
        id: &str,
        lookback: Duration,
    ) {
        let lookback = TimeDelta::from_std(lookback).unwrap_or(TimeDelta::MAX);
        let Some(shared) = window else {
            *window = Some(Arc::new(Self {
                field: field.to_owned(),
                since: time,
                seen: BTreeMap::from([(time, BTreeSet::from([id.to_owned()]))]),
            }));
            return;
        };
        let start = shared
            .since
            .checked_sub_signed(lookback)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if time < start || shared.seen.get(&time).is_some_and(|ids| ids.contains(id)) {
            return;
        }
        let this = Arc::make_mut(shared);
        if time > this.since {
            this.since = time;
            if let Some(cutoff) = time.checked_sub_signed(lookback) {
                this.seen = this.seen.split_off(&cutoff);
            }
        }
        this.seen.entry(time).or_default().insert(id.to_owned());
    }

    /// The window with its newest change no later than `now`: a cursor that an earlier version let run ahead
    /// of the present (a record dated in the future moved it there) would start every later run after the
    /// changes made meanwhile. What was remembered past `now` is forgotten: those records come again, as
    /// duplicates, never as a loss.
    pub fn no_later_than(mut self, now: DateTime<Utc>) -> Self {
        if self.since > now {
            self.since = now;
            self.seen.retain(|at, _| *at <= now);
        }
        self
    }

    /// Ids remembered in the window, all instants together (for tests and size estimates).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.values().map(BTreeSet::len).sum()
    }
}

impl From<IncrementalCursor> for SeenWindow {
    fn from(cursor: IncrementalCursor) -> Self {
        let mut seen: BTreeMap<DateTime<Utc>, BTreeSet<String>> = BTreeMap::new();
        for group in cursor.recent {
            seen.entry(group.at).or_default().extend(group.ids);
        }
        if !cursor.seen_ids.is_empty() {
            seen.entry(cursor.since)
                .or_default()
                .extend(cursor.seen_ids);
        }
        // Nothing is remembered past `since`.
        seen.retain(|at, _| *at <= cursor.since);
        Self {
            field: cursor.field,
            since: cursor.since,
            seen,
        }
    }
}

impl From<SeenWindow> for IncrementalCursor {
    fn from(window: SeenWindow) -> Self {
        let SeenWindow {
            field,
            since,
            mut seen,
        } = window;
        let seen_ids = seen
            .remove(&since)
            .map(|ids| ids.into_iter().collect())
            .unwrap_or_default();
        let recent = seen
            .into_iter()
            .map(|(at, ids)| SeenAt {
                at,
                ids: ids.into_iter().collect(),
            })
            .collect();
        Self {
            field,
            since,
            seen_ids,
            recent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(300);

    /// A cursor stored in the future by an earlier version (one record dated ahead moved it there) is brought
    /// back to the present before it is used: a run starting there would skip every change made meanwhile
    /// (airbytehq/airbyte#27498).
    #[test]
    fn a_cursor_in_the_future_is_brought_back_to_the_present() {
        let mut window = None;
        SeenWindow::observe(&mut window, "updated_at", at(1000), "a", WINDOW);
        SeenWindow::observe(&mut window, "updated_at", at(1100), "b", WINDOW);
        SeenWindow::observe(&mut window, "updated_at", at(9000), "future", WINDOW);
        let window = window.unwrap().as_ref().clone();
        let now = at(2000);
        let present = window.clone().no_later_than(now);
        assert_eq!(present.since(), now);
        assert!(
            !present.holds(at(9000), "future", now - TimeDelta::seconds(300)),
            "what lay past the present is fetched again"
        );
        // A cursor in the past is left as it is.
        assert_eq!(window.clone().no_later_than(at(9000)), window);
    }

    #[test]
    fn the_window_keeps_what_changed_within_the_lookback_of_the_newest_change() {
        let mut window = None;
        SeenWindow::observe(&mut window, "created", at(1000), "a", WINDOW);
        SeenWindow::observe(&mut window, "created", at(1200), "b", WINDOW);
        SeenWindow::observe(&mut window, "created", at(1200), "c", WINDOW);
        // Older than the window of the newest: not remembered (the next run does not ask for it).
        SeenWindow::observe(&mut window, "created", at(800), "d", WINDOW);
        assert_eq!(window.as_ref().unwrap().len(), 3);
        // The newest change moves on: what fell out of its window is forgotten.
        SeenWindow::observe(&mut window, "created", at(1400), "e", WINDOW);
        let window = window.unwrap();
        assert_eq!(window.since(), at(1400));
        assert_eq!(window.len(), 3, "{window:?}");
        let start = at(1400 - 300);
        assert!(window.holds(at(1200), "b", start));
        assert!(window.holds(at(1400), "e", start));
        assert!(!window.holds(at(1200), "x", start), "an unknown record");
        assert!(!window.holds(at(1300), "b", start), "b changed again");
        assert!(window.holds(at(1000), "zzz", start), "before the start");
    }

    #[test]
    fn an_unchanged_shared_window_is_not_copied() {
        let mut window = None;
        SeenWindow::observe(&mut window, "created", at(10), "a", WINDOW);
        let page_cursor = window.clone();
        SeenWindow::observe(&mut window, "created", at(10), "a", WINDOW);
        assert!(Arc::ptr_eq(
            window.as_ref().unwrap(),
            page_cursor.as_ref().unwrap()
        ));
        SeenWindow::observe(&mut window, "created", at(11), "b", WINDOW);
        assert!(!Arc::ptr_eq(
            window.as_ref().unwrap(),
            page_cursor.as_ref().unwrap()
        ));
        assert_eq!(
            page_cursor.unwrap().len(),
            1,
            "the page's copy is unchanged"
        );
    }

    #[test]
    fn cursors_of_earlier_versions_still_read() {
        let old = json!({"field": "lastmodifieddate", "since": "2024-01-01T00:00:09Z", "seenIds": ["51", "50"]});
        let cursor: IncrementalCursor = serde_json::from_value(old).unwrap();
        assert!(cursor.recent.is_empty());
        let window = SeenWindow::from(cursor);
        let since = window.since();
        assert!(window.holds(since, "51", since - TimeDelta::minutes(5)));
        assert!(!window.holds(
            since - TimeDelta::seconds(1),
            "51",
            since - TimeDelta::minutes(5)
        ));
    }

    #[test]
    fn cursors_round_trip_through_json_in_a_stable_order() {
        let mut window = None;
        for (secs, id) in [(5, "evt_5"), (9, "evt_9b"), (9, "evt_9a"), (7, "evt_7")] {
            SeenWindow::observe(&mut window, "created", at(1_704_067_200 + secs), id, WINDOW);
        }
        let cursor = IncrementalCursor::from((*window.unwrap()).clone());
        let json = serde_json::to_value(&cursor).unwrap();
        assert_eq!(
            json,
            json!({"field": "created", "since": "2024-01-01T00:00:09Z", "seenIds": ["evt_9a", "evt_9b"],
                   "recent": [{"at": "2024-01-01T00:00:05Z", "ids": ["evt_5"]},
                              {"at": "2024-01-01T00:00:07Z", "ids": ["evt_7"]}]})
        );
        let back: IncrementalCursor = serde_json::from_value(json).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(
            IncrementalCursor::from(SeenWindow::from(back.clone())),
            back
        );
    }
}
