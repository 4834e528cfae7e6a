//! Time as a dependency, so every engine is deterministic under test.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The source of "now" for every engine. Engines never call `Utc::now()` themselves.
///
/// The clocks here tick in whole microseconds, the precision every store keeps
/// (PostgreSQL's `timestamptz`), so a row read back equals the row written.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place that reads the system time: every other "now" comes from a Clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start` (truncated to the microsecond).
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start.trunc_subsecs(6))),
        }
    }

    /// Moves the clock to `instant` (it may go backwards, to test clock skew).
    pub fn set(&self, instant: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = instant.trunc_subsecs(6);
    }

    /// Moves the clock forward by `by` and returns the new time.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = (*now + by).trunc_subsecs(6);
        *now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(2));
        assert_eq!(shared.now(), start + Duration::hours(2));
        shared.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn clocks_tick_in_whole_microseconds() {
        use chrono::Timelike;
        assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
        let clock = ManualClock::new(DateTime::UNIX_EPOCH + Duration::nanoseconds(1_234_567));
        assert_eq!(clock.now().nanosecond(), 1_234_000);
        clock.advance(Duration::nanoseconds(999));
        assert_eq!(clock.now().nanosecond(), 1_234_000);
    }
}
