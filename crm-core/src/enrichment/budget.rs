//! The monthly enrichment budget: which alert thresholds a spend crosses and when
//! lookups pause. Pure: no I/O, amounts in minor units, months in UTC.

use chrono::{Datelike, Duration, NaiveDate};

use crate::money::Money;

/// The alert thresholds every budget has unless configured otherwise, in percent.
pub const DEFAULT_ALERT_PERCENTS: [u8; 3] = [50, 75, 90];

/// The "percent" of the event fired when spend reaches the whole budget.
pub const EXHAUSTED_PERCENT: u8 = 100;

/// Event kind of a threshold alert (50, 75, 90 % by default).
pub const ALERT_EVENT: &str = "enrichment.budget_alert";

/// Event kind fired once when spend reaches 100 % of the budget.
pub const EXHAUSTED_EVENT: &str = "enrichment.budget_exhausted";

/// How long a spend reservation holds budget when it is neither settled nor released
/// (the process died mid-call): 15 minutes, far above any provider call. After that it
/// stops counting, so a crash never holds a budget for good. Change it with
/// [`Enricher::with_reservation_ttl`](crate::enrichment::Enricher::with_reservation_ttl).
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::minutes(15);

/// A workspace's monthly enrichment budget.
///
/// Spend is counted per UTC calendar month. When a settled lookup moves the spend
/// across a threshold, one alert event fires for that threshold; its idempotency key
/// ([`alert_idempotency_key`]) makes it fire once per month however often it is
/// computed. At 100 % an [`EXHAUSTED_EVENT`] fires and, if `pause_at_limit` (the
/// default), further provider lookups are refused until the next month. With the
/// pause on, the budget is exact: each provider call first reserves its price, and a
/// call whose price does not fit next to the settled spend and the calls in flight is
/// not made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetPolicy {
    /// The monthly budget.
    pub monthly: Money,
    /// Alert thresholds in percent (1 to 99), ascending.
    pub alert_percents: Vec<u8>,
    /// Whether lookups pause once spend reaches the budget.
    pub pause_at_limit: bool,
}

impl BudgetPolicy {
    /// A budget of `monthly` with alerts at 50, 75 and 90 % and pause at 100 %.
    #[must_use]
    pub fn new(monthly: Money) -> Self {
        Self {
            monthly,
            alert_percents: DEFAULT_ALERT_PERCENTS.to_vec(),
            pause_at_limit: true,
        }
    }

    /// This budget with the pause at 100 % on or off (alerts fire either way).
    #[must_use]
    pub fn with_pause_at_limit(mut self, pause: bool) -> Self {
        self.pause_at_limit = pause;
        self
    }

    /// This budget with other alert thresholds; values outside 1 to 99 are dropped,
    /// the rest sorted and deduplicated.
    #[must_use]
    pub fn with_alert_percents(mut self, percents: impl IntoIterator<Item = u8>) -> Self {
        let mut p: Vec<u8> = percents
            .into_iter()
            .filter(|p| (1..100).contains(p))
            .collect();
        p.sort_unstable();
        p.dedup();
        self.alert_percents = p;
        self
    }

    /// Whether `spent` (minor units) has reached the whole budget.
    #[must_use]
    pub fn is_reached(&self, spent: i64) -> bool {
        spent >= self.monthly.minor_units()
    }

    /// Whether lookups are paused at `spent`.
    #[must_use]
    pub fn is_paused(&self, spent: i64) -> bool {
        self.pause_at_limit && self.is_reached(spent)
    }

    /// The thresholds (percent, ascending; [`EXHAUSTED_PERCENT`] for the whole budget)
    /// that a move from `before` to `after` spend crosses: those with
    /// `before < threshold <= after`. Nothing when spend does not grow.
    #[must_use]
    pub fn crossed(&self, before: i64, after: i64) -> Vec<u8> {
        let budget = i128::from(self.monthly.minor_units());
        // Compare spend * 100 with budget * percent to stay in integers.
        let reached = |spent: i64, pct: u8| i128::from(spent) * 100 >= budget * i128::from(pct);
        self.alert_percents
            .iter()
            .copied()
            .chain(std::iter::once(EXHAUSTED_PERCENT))
            .filter(|&pct| !reached(before, pct) && reached(after, pct))
            .collect()
    }
}

/// `2026-11` for any day of November 2026.
#[must_use]
pub fn month_label(month: NaiveDate) -> String {
    format!("{:04}-{:02}", month.year(), month.month())
}

/// The idempotency key of the alert for `percent` in `month`:
/// `enrichment.budget:{YYYY-MM}:{percent}`.
#[must_use]
pub fn alert_idempotency_key(month: NaiveDate, percent: u8) -> String {
    format!("enrichment.budget:{}:{percent}", month_label(month))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn budget(minor: i64) -> BudgetPolicy {
        BudgetPolicy::new(Money::new(minor, Currency::new("EUR").unwrap()).unwrap())
    }

    #[test]
    fn thresholds_fire_between_old_and_new_spend() {
        let b = budget(1000);
        assert_eq!(b.crossed(0, 499), Vec::<u8>::new());
        assert_eq!(b.crossed(0, 500), vec![50]);
        assert_eq!(b.crossed(500, 800), vec![75]);
        assert_eq!(b.crossed(800, 1200), vec![90, 100]);
        assert_eq!(b.crossed(0, 1000), vec![50, 75, 90, 100]);
        assert_eq!(b.crossed(1000, 2000), Vec::<u8>::new());
        assert_eq!(b.crossed(700, 600), Vec::<u8>::new());
    }

    #[test]
    fn pause_is_configurable() {
        assert!(budget(100).is_paused(100));
        assert!(!budget(100).is_paused(99));
        assert!(!budget(100).with_pause_at_limit(false).is_paused(500));
    }

    #[test]
    fn keys_name_month_and_percent() {
        let nov = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(
            alert_idempotency_key(nov, 75),
            "enrichment.budget:2026-11:75"
        );
        assert_eq!(
            budget(10)
                .with_alert_percents([90, 0, 50, 50, 120])
                .alert_percents,
            vec![50, 90]
        );
    }

    proptest! {
        #[test]
        fn any_split_of_spend_fires_each_threshold_once(
            budget_minor in 1i64..100_000,
            steps in proptest::collection::vec(0i64..5_000, 1..40),
        ) {
            let b = budget(budget_minor);
            let mut spent = 0i64;
            let mut fired = Vec::new();
            for step in steps {
                fired.extend(b.crossed(spent, spent + step));
                spent += step;
            }
            let mut expected: Vec<u8> = b.crossed(0, spent);
            expected.sort_unstable();
            let mut sorted = fired.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, expected);
        }
    }
}
