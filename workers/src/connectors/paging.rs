//! What keeps paging honest: a guard that ends a listing going in circles, and offset paging that neither
//! skips nor repeats a record when the list changes between pages.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Remembers, for one endpoint of one fetch, a 64-bit hash of every cursor requested and of every page
/// answered (its record ids in order), and how many pages an offset list took against the total it announced.
/// Memory: 16 bytes or so per page, never a record; a false alarm needs two of a fetch's hashes to collide
/// (odds about pages² / 2⁶⁵: one in a million for 6 million pages).
#[derive(Debug, Default)]
pub(crate) struct LoopGuard {
    cursors: HashSet<u64>,
    pages: HashSet<u64>,
    forward_pages: u64,
    announced: Option<u64>,
    smallest_step: Option<u64>,
}

fn hash_of(value: &(impl Hash + ?Sized)) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl LoopGuard {
    /// Whether `cursor` is used for the first time (and remembers it).
    pub fn first_cursor(&mut self, cursor: &(impl Hash + ?Sized)) -> bool {
        self.cursors.insert(hash_of(cursor))
    }

    /// Whether a page with these record identities, in this order, is new (and remembers it).
    pub fn first_page<'a>(&mut self, ids: impl Iterator<Item = &'a str>) -> bool {
        let mut hasher = DefaultHasher::new();
        for id in ids {
            id.hash(&mut hasher);
        }
        self.pages.insert(hasher.finish())
    }

    /// Counts a page that moved an offset listing forward by `step` records, against the largest total the
    /// list announced. `Err((total, pages))` once the pages are far beyond what that total needs at the
    /// smallest step seen (a platform may answer fewer records than asked): twice the pages, plus two for
    /// records added meanwhile.
    pub fn forward_page(&mut self, announced: Option<u64>, step: u64) -> Result<(), (u64, u64)> {
        self.forward_pages += 1;
        self.announced = self.announced.max(announced);
        let step = self
            .smallest_step
            .map_or(step, |smallest| smallest.min(step));
        self.smallest_step = Some(step);
        let Some(total) = self.announced else {
            return Ok(());
        };
        let needed = total.div_ceil(step.max(1));
        if self.forward_pages > 2 * needed + 2 {
            return Err((total, self.forward_pages));
        }
        Ok(())
    }
}

/// How far back an offset listing steps, one page each time, to find its place again before giving up.
pub(crate) const MAX_STEP_BACKS: u32 = 4;

/// `limit` + `offset` paging where each request overlaps the previous page by `overlap` records.
///
/// When the answer announces a total, a page shorter than `limit` does not end the list while the records
/// received stop short of that total: platforms hold the page size to their own maximum (Mailchimp's
/// `count` to 1,000, ActiveCampaign's `limit` to 100, Box's `limit` to 1,000) or answer a short page
/// mid-list, so the next offset moves by the records received, never by the limit asked. An empty page
/// before the announced total is [`OffsetNext::ShortOfTotal`]. Without a total, a short page ends the list.
///
/// The previous page's last records are looked for in the new page: everything up to the last of them
/// that is found was fetched already, what follows is new (minus any record of the previous page, should the
/// order have moved). Deletions before the position shift the list left: up to `overlap - 1` of them
/// between two requests still leave a record of the previous page in the overlap. When none is found, the
/// pager steps back by a page (at most [`MAX_STEP_BACKS`] times) and looks again; if the list still cannot
/// be anchored, the data type fails as changed-too-much rather than skip a record. Memory: the previous
/// page's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetWithOverlap {
    pub limit: u64,
    pub overlap: u64,
}

/// What one page of an [`OffsetWithOverlap`] listing means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetStep {
    /// Records from this index on are new, except those of the previous page; `None`: nothing on this page
    /// is taken (it could not be placed).
    pub new_from: Option<usize>,
    pub next: OffsetNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetNext {
    /// The list is exhausted.
    Done,
    /// The next page, the one after this (anchored) page.
    Forward { offset: u64 },
    /// This page could not be placed: read the one before it again.
    StepBack { offset: u64 },
    /// The page could not be placed even after stepping back.
    Lost,
    /// The page at `offset` is empty although its answer announces `total` records, more than `offset`: the
    /// records in between can be neither read nor skipped.
    ShortOfTotal { offset: u64, total: u64 },
}

impl OffsetWithOverlap {
    /// Interprets the page at `offset` (the identities of its records, in order), given the previous
    /// page's identities (empty for the first page), how many times the pager has stepped back since, and
    /// the total the answer announces, if it announces one: `total.0` the total, `total.1` the page size the
    /// answer says it used when it says so (then the page covers that many positions however few records
    /// it holds: Box's `total_count` counts positions, entries hidden from the user leave pages short).
    pub fn step(
        &self,
        offset: u64,
        page: &[&str],
        previous: &HashSet<&str>,
        step_backs: u32,
        total: Option<(u64, Option<u64>)>,
    ) -> OffsetStep {
        let n = page.len() as u64;
        let short_of_total = total.and_then(|(total, used_limit)| {
            let covered = used_limit.map_or(n, |used| used.max(n));
            (offset + covered < total).then_some(total)
        });
        if let (0, Some((announced, _))) = (n, total) {
            if offset < announced {
                // Positions remain before the total: an empty page is no deletion before the position.
                let next = match short_of_total {
                    Some(total) => OffsetNext::ShortOfTotal { offset, total },
                    // The page size answered covers them all, none visible (Box's hidden entries).
                    None => OffsetNext::Done,
                };
                return OffsetStep {
                    new_from: None,
                    next,
                };
            }
        }
        let after_this = if n > 0 && (n >= self.limit || short_of_total.is_some()) {
            OffsetNext::Forward {
                offset: offset + self.advance(n),
            }
        } else {
            OffsetNext::Done
        };
        if previous.is_empty() {
            return OffsetStep {
                new_from: Some(0),
                next: after_this,
            };
        }
        if let Some(anchor) = page.iter().rposition(|id| previous.contains(id)) {
            return OffsetStep {
                new_from: Some(anchor + 1),
                next: after_this,
            };
        }
        let next = if n == 0 && offset == 0 {
            // Every record is gone: none can have been skipped.
            OffsetNext::Done
        } else if offset == 0 || step_backs >= MAX_STEP_BACKS {
            OffsetNext::Lost
        } else {
            // Back by as much as the previous page moved forward.
            OffsetNext::StepBack {
                offset: offset.saturating_sub(self.advance(previous.len() as u64)),
            }
        };
        OffsetStep {
            new_from: None,
            next,
        }
    }

    /// How far the next request starts after a page of `n` records (at least one): the records received,
    /// less the overlap (at most all but one of them).
    pub fn advance(&self, n: u64) -> u64 {
        n.max(1) - self.overlap.min(n.max(1) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGING: OffsetWithOverlap = OffsetWithOverlap {
        limit: 5,
        overlap: 2,
    };

    fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    /// Pages a list of ids that `change` edits before each request after the first; returns every id taken.
    fn drain(
        list: Vec<String>,
        change: impl FnMut(usize, &mut Vec<String>),
    ) -> Result<Vec<String>, &'static str> {
        drain_capped(list, PAGING.limit, true, change)
    }

    /// [`drain`] against a platform answering at most `cap` records a page, announcing the list's length as
    /// its total when `total` says so.
    fn drain_capped(
        mut list: Vec<String>,
        cap: u64,
        total: bool,
        mut change: impl FnMut(usize, &mut Vec<String>),
    ) -> Result<Vec<String>, &'static str> {
        let (mut offset, mut previous, mut step_backs, mut out) =
            (0u64, Vec::<String>::new(), 0, vec![]);
        for request in 0..100 {
            if request > 0 {
                change(request, &mut list);
            }
            let start = (offset as usize).min(list.len());
            let end = (start + PAGING.limit.min(cap) as usize).min(list.len());
            let page: Vec<&str> = list[start..end].iter().map(String::as_str).collect();
            let prev: HashSet<&str> = previous.iter().map(String::as_str).collect();
            let announced = total.then_some((list.len() as u64, None));
            let step = PAGING.step(offset, &page, &prev, step_backs, announced);
            if let Some(from) = step.new_from {
                out.extend(
                    page[from..]
                        .iter()
                        .filter(|id| !prev.contains(*id))
                        .map(|s| s.to_string()),
                );
                previous = page.iter().map(|s| s.to_string()).collect();
            }
            match step.next {
                OffsetNext::Done => return Ok(out),
                OffsetNext::Forward { offset: next } => (offset, step_backs) = (next, 0),
                OffsetNext::StepBack { offset: next } => {
                    (offset, step_backs) = (next, step_backs + 1)
                }
                OffsetNext::Lost => return Err("lost"),
                OffsetNext::ShortOfTotal { .. } => return Err("short of total"),
            }
        }
        Err("did not end")
    }

    #[test]
    fn pages_held_below_the_limit_go_on_to_the_announced_total() {
        for cap in 2..=4 {
            assert_eq!(
                drain_capped(ids(1..=23), cap, true, |_, _| {}).unwrap(),
                ids(1..=23),
                "{cap} a page"
            );
        }
        // Pages of one record cannot overlap: the pager never takes a record it cannot place after the
        // previous one, and the engine's guard ends the circle (stepping back, coming forward again).
        assert!(drain_capped(ids(1..=23), 1, true, |_, _| {}).is_err());
        // Without a total, a short page still ends the list.
        assert_eq!(
            drain_capped(ids(1..=23), 3, false, |_, _| {}).unwrap(),
            ids(1..=3)
        );
    }

    #[test]
    fn a_short_page_mid_list_does_not_end_it_before_the_total() {
        let paging = OffsetWithOverlap {
            limit: 10,
            overlap: 2,
        };
        let page = ["1", "2", "3", "4"];
        let step = paging.step(0, &page, &HashSet::new(), 0, Some((30, None)));
        assert_eq!(step.next, OffsetNext::Forward { offset: 2 });
        let step = paging.step(26, &page, &HashSet::new(), 0, Some((30, None)));
        assert_eq!(step.next, OffsetNext::Done);
        // Box: a page of 10 positions holding 4 visible records, the total counting positions.
        let step = paging.step(0, &page, &HashSet::new(), 0, Some((30, Some(10))));
        assert_eq!(step.next, OffsetNext::Forward { offset: 2 });
        let step = paging.step(20, &page, &HashSet::new(), 0, Some((30, Some(10))));
        assert_eq!(step.next, OffsetNext::Done);
    }

    #[test]
    fn an_empty_page_before_the_total_fails_instead_of_ending_or_looping() {
        let prev: HashSet<&str> = ["4", "5"].into_iter().collect();
        let step = PAGING.step(3, &[], &prev, 0, Some((20, None)));
        assert_eq!(
            step.next,
            OffsetNext::ShortOfTotal {
                offset: 3,
                total: 20
            }
        );
        assert_eq!(step.new_from, None);
        let step = PAGING.step(0, &[], &HashSet::new(), 0, Some((7, None)));
        assert_eq!(
            step.next,
            OffsetNext::ShortOfTotal {
                offset: 0,
                total: 7
            }
        );
        // Box: an empty page whose positions reach the total (the last ones hidden from the user) ends it.
        let step = PAGING.step(3, &[], &prev, 0, Some((7, Some(5))));
        assert_eq!(step.next, OffsetNext::Done);
        let step = PAGING.step(0, &[], &HashSet::new(), 0, Some((5, Some(5))));
        assert_eq!(step.next, OffsetNext::Done);
        // Deletions that bring the total below the position: the pager steps back to find its place.
        let step = PAGING.step(3, &[], &prev, 0, Some((2, None)));
        assert_eq!(step.next, OffsetNext::StepBack { offset: 2 });
    }

    #[test]
    fn an_unchanged_list_is_read_once_each() {
        assert_eq!(drain(ids(1..=23), |_, _| {}).unwrap(), ids(1..=23));
        assert_eq!(drain(ids(1..=5), |_, _| {}).unwrap(), ids(1..=5));
        assert_eq!(drain(vec![], |_, _| {}).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn deletions_before_the_position_skip_nothing() {
        // One deletion before the position between each request: absorbed by the overlap.
        let survivors: Vec<String> = ids(1..=30)
            .into_iter()
            .filter(|id| !["1", "2", "3", "4"].contains(&id.as_str()))
            .collect();
        let out = drain(ids(1..=30), |request, list| {
            if request <= 4 {
                let id = request.to_string();
                list.retain(|x| *x != id);
            }
        })
        .unwrap();
        for id in &survivors {
            assert_eq!(
                out.iter().filter(|x| *x == id).count(),
                1,
                "{id} in {out:?}"
            );
        }
    }

    #[test]
    fn many_deletions_step_back_and_still_skip_nothing() {
        // After the first page, more records than the overlap disappear before the position, among them
        // the previous page's last ones: none is in the overlap, so the pager steps back.
        let out = drain(ids(1..=40), |request, list| {
            if request == 1 {
                list.retain(|x| !["2", "3", "4", "6", "7"].contains(&x.as_str()));
            }
        })
        .unwrap();
        let mut expected = ids(1..=5);
        expected.extend(ids(8..=40));
        assert_eq!(out, expected);
    }

    #[test]
    fn a_list_that_cannot_be_placed_again_is_lost_not_skipped() {
        // Every page, everything read so far is deleted and the rest renamed: no anchor is ever found.
        let result = drain(ids(1..=40), |request, list| {
            *list = (0..40).map(|i| format!("r{request}-{i}")).collect();
        });
        assert_eq!(result, Err("lost"));
    }

    #[test]
    fn insertions_before_the_position_repeat_nothing() {
        let out = drain(ids(1..=20), |request, list| {
            if request < 3 {
                list.insert(0, format!("new{request}"));
            }
        })
        .unwrap();
        let mut sorted = out.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), out.len(), "no duplicates: {out:?}");
        for id in ids(1..=20) {
            assert!(out.contains(&id), "{id} in {out:?}");
        }
    }

    #[test]
    fn the_guard_spots_cursors_and_pages_seen_before_and_endless_lists() {
        let mut guard = LoopGuard::default();
        assert!(guard.first_cursor("100"));
        assert!(!guard.first_cursor("100"));
        assert!(guard.first_page(["a", "b"].into_iter()));
        assert!(guard.first_page(["b", "a"].into_iter()), "order matters");
        assert!(!guard.first_page(["a", "b"].into_iter()));
        // 1,000 records, 190 new per page: 6 pages needed, 14 tolerated.
        for _ in 0..14 {
            guard.forward_page(Some(1000), 190).unwrap();
        }
        assert_eq!(guard.forward_page(Some(1000), 190), Err((1000, 15)));
    }
}
