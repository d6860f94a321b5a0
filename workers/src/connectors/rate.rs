//! One request budget per connection, shared by every data type fetched through it at the same time.
//!
//! The bucket is a GCRA (generic cell rate algorithm): it keeps the theoretical arrival time of the next
//! request and each caller *reserves* its slot before sleeping, so callers are served in arrival order and a
//! burst of concurrent callers is spread out at the configured rate instead of stampeding when a token frees.
//! Time comes from `tokio::time`, so tests can drive it with a paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A sustained rate and how many requests may go out back to back before it applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second; `f64::INFINITY` for no limit.
    pub per_second: f64,
    /// Requests allowed at once from an idle budget (at least 1).
    pub burst: u32,
}

impl RateLimit {
    pub const fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: 1,
        }
    }

    pub const fn unlimited() -> Self {
        Self {
            per_second: f64::INFINITY,
            burst: 1,
        }
    }

    pub const fn with_burst(self, burst: u32) -> Self {
        Self { burst, ..self }
    }

    fn interval(&self) -> Duration {
        if self.per_second.is_finite() && self.per_second > 0.0 {
            Duration::from_secs_f64(1.0 / self.per_second)
        } else {
            Duration::ZERO
        }
    }

    /// Parses `25`, `25/s`, `2.5` or `unlimited` (the value of `LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") || text == "0" {
            return Some(Self::unlimited());
        }
        let number = text.strip_suffix("/s").unwrap_or(text).trim();
        match number.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Some(Self::per_second(rate)),
            _ => None,
        }
    }
}

/// Per-platform rates: each platform's default (`DefaultRate` in its catalog module, from what the platform
/// documents for one app or key), overridden by configuration.
#[derive(Debug, Clone)]
pub struct RateLimits {
    per_platform: HashMap<String, RateLimit>,
    fallback: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_platform: listbackup_domain::platform::CATALOG
                .iter()
                .map(|platform| {
                    let rate = RateLimit::per_second(platform.rate.per_second)
                        .with_burst(platform.rate.burst);
                    (platform.id.to_owned(), rate)
                })
                .collect(),
            // Only for an id outside the catalog: unreachable through a PlatformId.
            fallback: RateLimit::per_second(5.0),
        }
    }
}

impl RateLimits {
    pub fn with(mut self, platform_id: &str, limit: RateLimit) -> Self {
        self.per_platform.insert(platform_id.to_owned(), limit);
        self
    }

    /// The defaults, overridden by `LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT` where `lookup` has a valid value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        listbackup_domain::platform::CATALOG
            .iter()
            .fold(Self::default(), |limits, platform| {
                let key = format!(
                    "LISTBACKUP_PLATFORM_{}_RATE_LIMIT",
                    platform.id.to_ascii_uppercase()
                );
                match lookup(&key).as_deref().and_then(RateLimit::parse) {
                    Some(limit) => limits.with(platform.id, limit),
                    None => limits,
                }
            })
    }

    pub fn for_platform(&self, platform_id: &str) -> RateLimit {
        self.per_platform
            .get(platform_id)
            .copied()
            .unwrap_or(self.fallback)
    }
}

/// What a budget has done so far: tests assert on this instead of on wall-clock time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateStats {
    /// Requests let through.
    pub granted: u64,
    /// How many of them had to wait for their slot.
    pub waited: u64,
    /// The sum of those waits.
    pub total_wait: Duration,
}

#[derive(Debug)]
struct Bucket {
    /// When the next request would be on schedule (GCRA's theoretical arrival time).
    next_at: Option<Instant>,
    stats: RateStats,
}

/// A token bucket for one connection.
#[derive(Debug)]
pub struct RateBudget {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

impl RateBudget {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Mutex::new(Bucket {
                next_at: None,
                stats: RateStats::default(),
            }),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Waits until one more request fits the budget. Cancel-safe in the sense that matters here: a dropped
    /// waiter keeps its reserved slot, which only delays later callers by one interval.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reserves the next slot and returns how long to wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let interval = self.limit.interval();
        // How far ahead of schedule an idle budget may run: `burst - 1` intervals.
        let tolerance = interval * self.limit.burst.max(1).saturating_sub(1);
        let mut bucket = self.bucket.lock().expect("rate budget lock");
        let scheduled = bucket.next_at.map_or(now, |at| at.max(now));
        let allowed_at = scheduled.checked_sub(tolerance).unwrap_or(now);
        let wait = allowed_at.saturating_duration_since(now);
        bucket.next_at = Some(scheduled + interval);
        bucket.stats.granted += 1;
        if !wait.is_zero() {
            bucket.stats.waited += 1;
            bucket.stats.total_wait += wait;
        }
        wait
    }

    pub fn stats(&self) -> RateStats {
        self.bucket.lock().expect("rate budget lock").stats
    }

    /// Whether the budget is on schedule at `now`: its next slot is not in the future, so a request would
    /// go at once, as through a new budget.
    fn caught_up(&self, now: Instant) -> bool {
        let bucket = self.bucket.lock().expect("rate budget lock");
        bucket.next_at.is_none_or(|at| at <= now)
    }
}

/// The budgets of the connections in use, by connection id, so that every request through one connection
/// shares one budget: concurrent data types of a fetch, and each of a restore's writes, which take the budget
/// for one request and give it back.
///
/// A budget is kept while anyone holds it or while it is behind its schedule (its next slot still in the
/// future): forgetting it then would hand the next request a fresh, idle budget and let it go at once (a
/// restore's writes, one budget per request, went out at 919 requests/s against a budget of 100,
/// `bench/restore-throughput`). A budget nobody holds that has caught up is dropped when another
/// connection's is created: a new one would behave exactly the same, so idle connections cost nothing.
#[derive(Debug, Default)]
pub struct RateBudgets {
    limits: RateLimits,
    budgets: Mutex<HashMap<String, Arc<RateBudget>>>,
}

impl RateBudgets {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            budgets: Mutex::default(),
        }
    }

    /// The budget of this connection, created at its platform's rate when none is kept.
    pub fn budget(&self, connection_id: &str, platform_id: &str) -> Arc<RateBudget> {
        let mut budgets = self.budgets.lock().expect("rate budgets lock");
        if let Some(budget) = budgets.get(connection_id) {
            return Arc::clone(budget);
        }
        let now = Instant::now();
        budgets.retain(|_, budget| Arc::strong_count(budget) > 1 || !budget.caught_up(now));
        let budget = Arc::new(RateBudget::new(self.limits.for_platform(platform_id)));
        budgets.insert(connection_id.to_owned(), Arc::clone(&budget));
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_requests_at_the_rate() {
        let budget = RateBudget::new(RateLimit::per_second(20.0));
        let start = Instant::now();
        for _ in 0..40 {
            budget.acquire().await;
        }
        // The first goes at once, the other 39 one interval (50 ms) apart: 1.95 s of (virtual) time.
        assert_eq!(start.elapsed(), Duration::from_millis(1950));
        let stats = budget.stats();
        assert_eq!(stats.granted, 40);
        assert_eq!(stats.waited, 39);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_goes_out_at_once_then_the_rate_applies() {
        let budget = RateBudget::new(RateLimit::per_second(10.0).with_burst(5));
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(budget.stats().waited, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let budgets =
            RateBudgets::new(RateLimits::default().with("stripe", RateLimit::per_second(20.0)));
        let a = budgets.budget("conn-1", "stripe");
        let b = budgets.budget("conn-1", "stripe");
        let other = budgets.budget("conn-2", "stripe");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        let start = Instant::now();
        let run = |budget: Arc<RateBudget>| async move {
            for _ in 0..20 {
                budget.acquire().await;
            }
        };
        tokio::join!(run(a.clone()), run(b.clone()));
        // 40 requests through one budget take as long as 40 sequential ones.
        assert_eq!(start.elapsed(), Duration::from_millis(1950));
        assert_eq!(a.stats().granted, 40);
        assert_eq!(other.stats().granted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_budget_does_not_bank_more_than_its_burst() {
        let budget = RateBudget::new(RateLimit::per_second(10.0).with_burst(2));
        budget.acquire().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn unlimited_never_waits() {
        let budget = RateBudget::new(RateLimit::unlimited());
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(budget.reserve(now), Duration::ZERO);
        }
        assert_eq!(budget.stats().waited, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_each_take_the_budget_and_give_it_back_are_paced_all_the_same() {
        // A restore's writes: one budget taken per request, dropped after it.
        let budgets =
            RateBudgets::new(RateLimits::default().with("stripe", RateLimit::per_second(20.0)));
        let start = Instant::now();
        for _ in 0..40 {
            budgets.budget("conn", "stripe").acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1950));
        assert_eq!(budgets.budget("conn", "stripe").stats().granted, 40);
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_nobody_holds_is_forgotten_once_it_has_caught_up() {
        let budgets =
            RateBudgets::new(RateLimits::default().with("keap", RateLimit::per_second(10.0)));
        budgets.budget("conn", "keap").acquire().await;
        budgets.budget("conn", "keap").acquire().await;
        // Behind schedule (its next slot 100 ms ahead): kept, though nobody holds it.
        budgets.budget("other", "keap");
        assert_eq!(budgets.budget("conn", "keap").stats().granted, 2);
        // Caught up: forgotten when another connection's budget is made; a new one behaves the same.
        tokio::time::advance(Duration::from_millis(150)).await;
        budgets.budget("third", "keap");
        assert_eq!(budgets.budget("conn", "keap").stats().granted, 0);
    }

    #[test]
    fn limits_parse_and_override() {
        assert_eq!(RateLimit::parse("25/s"), Some(RateLimit::per_second(25.0)));
        assert_eq!(RateLimit::parse("unlimited"), Some(RateLimit::unlimited()));
        assert_eq!(RateLimit::parse("-1"), None);
        assert_eq!(RateLimit::parse("fast"), None);
        let limits = RateLimits::from_lookup(|key| {
            (key == "LISTBACKUP_PLATFORM_STRIPE_RATE_LIMIT").then(|| "100".to_owned())
        });
        assert_eq!(limits.for_platform("stripe").per_second, 100.0);
        assert_eq!(limits.for_platform("hubspot").per_second, 10.0);
        let zendesk = listbackup_domain::platform::find("zendesk").unwrap().rate;
        assert_eq!(
            limits.for_platform("zendesk").per_second,
            zendesk.per_second
        );
    }
}
