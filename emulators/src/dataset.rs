//! Data sets: a count of records plus the few facts that make each record computable from its index (when
//! it was created, when it was last changed, whether it is visible), so a million-record data set costs a few
//! bytes and every page is generated on demand.

use std::collections::{BTreeMap, BTreeSet};

/// 2024-01-01T00:00:00Z: the emulator's clock starts here.
pub(crate) const EPOCH_MS: i64 = 1_704_067_200_000;
/// Records of one `seed`/`append` call are created this far apart: two per second, so Stripe's whole-second
/// `created` values tie, as they do in real accounts.
pub(crate) const STEP_MS: i64 = 500;

/// One data set: `count` records; record `i` was created at `created_ms(i)` and last changed at
/// `touched[i]` if it was touched, else when it was created.
#[derive(Default)]
pub(crate) struct Dataset {
    /// `(first index, creation time of that index)` of each `seed`/`append` call, in order.
    pub(crate) segments: Vec<(u64, i64)>,
    pub(crate) count: u64,
    pub(crate) touched: BTreeMap<u64, i64>,
    /// Records in no listing, search or count: deleted, or not visible yet.
    pub(crate) hidden: BTreeSet<u64>,
    /// Records written through the platform's API (Stripe's writes): the fields set on them, over the
    /// generated record, or (`created`) the whole record apart from its id and creation time.
    pub(crate) written: BTreeMap<u64, Written>,
}

/// What the API's writes made of one record.
#[derive(Default, Clone)]
pub(crate) struct Written {
    /// Created through the API: the record is these fields only, not a generated one.
    pub(crate) created: bool,
    pub(crate) fields: serde_json::Map<String, serde_json::Value>,
}

impl Dataset {
    pub(crate) fn created_ms(&self, index: u64) -> i64 {
        let segment = self.segments.partition_point(|(start, _)| *start <= index) - 1;
        let (start, base) = self.segments[segment];
        base + (index - start) as i64 * STEP_MS
    }

    pub(crate) fn updated_ms(&self, index: u64) -> i64 {
        self.touched
            .get(&index)
            .copied()
            .unwrap_or_else(|| self.created_ms(index))
    }

    /// The first index created at or after `ms` (creation times grow with the index).
    pub(crate) fn first_created_at_or_after(&self, ms: i64) -> u64 {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.created_ms(mid) < ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Indices changed at or after `ms`, in index order (hidden ones too).
    pub(crate) fn changed_since_by_index(&self, ms: i64) -> impl Iterator<Item = u64> + '_ {
        let first = self.first_created_at_or_after(ms);
        let untouched = (first..self.count).filter(|i| !self.touched.contains_key(i));
        let touched = self
            .touched
            .iter()
            .filter(move |(_, t)| **t >= ms)
            .map(|(i, _)| *i);
        merge_by(untouched, touched, |i| *i)
    }

    /// The user-set fields of record `index` as the platform's writes left them: a record created through the
    /// API is the fields written; a generated one (`generated`, an object) has the fields written over its
    /// own. A field written as `null` has no value and is left out.
    pub(crate) fn fields(
        &self,
        index: u64,
        generated: impl FnOnce() -> serde_json::Value,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = match self.written.get(&index) {
            Some(written) if written.created => serde_json::Map::new(),
            _ => match generated() {
                serde_json::Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            },
        };
        if let Some(written) = self.written.get(&index) {
            for (field, value) in &written.fields {
                fields.insert(field.clone(), value.clone());
            }
        }
        fields.retain(|_, value| !value.is_null());
        fields
    }

    /// Whether record `index` exists and is listed (not deleted).
    pub(crate) fn exists(&self, index: u64) -> bool {
        index < self.count && self.visible(index)
    }

    pub(crate) fn visible(&self, index: u64) -> bool {
        !self.hidden.contains(&index)
    }

    /// Visible records.
    pub(crate) fn visible_count(&self) -> u64 {
        self.count - self.hidden.range(..self.count).count() as u64
    }

    /// The index of the visible record at `position` (0-based) among the visible ones, in index order.
    pub(crate) fn nth_visible(&self, position: u64) -> u64 {
        let mut index = position;
        for hidden in &self.hidden {
            if *hidden <= index {
                index += 1;
            } else {
                break;
            }
        }
        index
    }
}

/// Merges two sorted iterators by `key`.
pub(crate) fn merge_by<T, K: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if key(x) <= key(y) => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}
