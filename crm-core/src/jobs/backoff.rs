//! Exponential backoff with jitter, as a pure function of the attempt number.

use std::time::Duration;

/// How much randomness a [`Backoff`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// "Full jitter": a uniformly random delay between zero and the exponential
    /// ceiling, so retries of many jobs that failed together spread out (the default).
    #[default]
    Full,
    /// Exactly the exponential ceiling; for tests and single-tenant hosts.
    None,
}

/// Exponential backoff: attempt `n` (counting from 1) waits up to
/// `min(cap, base * 2^(n-1))`, scaled by the [`Jitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The ceiling of the first retry.
    pub base: Duration,
    /// No delay is ever longer.
    pub cap: Duration,
    /// Randomness.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// One second, doubling, capped at ten minutes, full jitter.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`, with full jitter.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            jitter: Jitter::Full,
        }
    }

    /// Sets the jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The exponential ceiling of `attempt` (attempts below 1 count as 1):
    /// `min(cap, base * 2^(attempt-1))`, without overflow.
    #[must_use]
    pub fn ceiling(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 31)).unwrap_or(0);
        self.base
            .checked_mul(1_u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay of `attempt` given a `unit` sample in `[0, 1]` (values outside are
    /// clamped; a non-finite sample counts as 1). Pure, for tests.
    #[must_use]
    pub fn delay_with(&self, attempt: i32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => {
                let unit = if unit.is_finite() {
                    unit.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                ceiling.mul_f64(unit).min(ceiling)
            }
        }
    }

    /// The delay before retrying after failed `attempt`, with a random jitter sample.
    #[must_use]
    pub fn delay(&self, attempt: i32) -> Duration {
        let unit = match self.jitter {
            Jitter::None => 1.0,
            Jitter::Full => rand::random::<f64>(),
        };
        self.delay_with(attempt, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
        let ceilings: Vec<u64> = (0..7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [2, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.ceiling(i32::MAX), Duration::from_secs(30));
        let exact = b.with_jitter(Jitter::None);
        assert_eq!(exact.delay(3), Duration::from_secs(8));
        assert_eq!(b.delay_with(3, f64::NAN), Duration::from_secs(8));
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_the_ceiling(
            base_ms in 0_u64..100_000,
            cap_ms in 0_u64..10_000_000,
            attempt in -5_i32..100,
            unit in proptest::num::f64::ANY,
        ) {
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let delay = b.delay_with(attempt, unit);
            prop_assert!(delay <= b.ceiling(attempt));
            prop_assert!(b.ceiling(attempt) <= b.cap);
            prop_assert!(b.delay(attempt) <= b.ceiling(attempt));
        }
    }
}
