//! Exponential backoff with full jitter, as pure functions of the attempt number and a
//! random fraction.

use chrono::Duration;

/// The most a retry after `attempt` (1 for the first failed attempt) may wait:
/// `base * 2^(attempt - 1)`, never more than `cap` and never negative. Monotone: a
/// later attempt never has a smaller ceiling.
#[must_use]
pub fn backoff_ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let base_ms = base.num_milliseconds().max(0);
    let cap_ms = cap.num_milliseconds().max(0);
    let shift = attempt.saturating_sub(1).min(62);
    let raw = base_ms.checked_mul(1_i64 << shift).unwrap_or(i64::MAX);
    Duration::try_milliseconds(raw.min(cap_ms)).unwrap_or_else(Duration::zero)
}

/// Full jitter: `fraction` (0.0 to 1.0; anything else is clamped, NaN counts as 0) of
/// `ceiling`, rounded down to the millisecond. Never negative, never above `ceiling`.
#[must_use]
pub fn full_jitter(ceiling: Duration, fraction: f64) -> Duration {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let ceiling_ms = ceiling.num_milliseconds().max(0);
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let picked = ((ceiling_ms as f64) * fraction) as i64;
    Duration::try_milliseconds(picked.clamp(0, ceiling_ms)).unwrap_or_else(Duration::zero)
}

/// The wait before retrying after `attempt`, with `fraction` as the random pick.
#[must_use]
pub fn backoff_delay(base: Duration, cap: Duration, attempt: u32, fraction: f64) -> Duration {
    full_jitter(backoff_ceiling(base, cap, attempt), fraction)
}

/// A uniform random fraction in `[0, 1)` for [`full_jitter`].
#[must_use]
pub fn jitter_fraction() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceilings_double_until_the_cap() {
        let (base, cap) = (Duration::seconds(30), Duration::minutes(5));
        let ceilings: Vec<i64> = (1..=6)
            .map(|a| backoff_ceiling(base, cap, a).num_seconds())
            .collect();
        assert_eq!(ceilings, vec![30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff_ceiling(base, cap, 0), base);
        assert_eq!(backoff_ceiling(base, cap, u32::MAX), cap);
    }

    #[test]
    fn jitter_stays_between_zero_and_the_ceiling() {
        let ceiling = Duration::seconds(10);
        assert_eq!(full_jitter(ceiling, 0.0), Duration::zero());
        assert_eq!(full_jitter(ceiling, 1.0), ceiling);
        assert_eq!(full_jitter(ceiling, 0.5), Duration::seconds(5));
        assert_eq!(full_jitter(ceiling, f64::NAN), Duration::zero());
        assert_eq!(full_jitter(ceiling, 7.0), ceiling);
        assert_eq!(full_jitter(Duration::seconds(-3), 0.5), Duration::zero());
    }

    proptest! {
        #[test]
        fn backoff_is_never_negative_nor_above_the_cap(
            base_ms in -1_000_000i64..100_000_000,
            cap_ms in -1_000i64..1_000_000_000,
            attempt in 0u32..200,
            fraction in proptest::num::f64::ANY,
        ) {
            let (base, cap) = (Duration::milliseconds(base_ms), Duration::milliseconds(cap_ms));
            let delay = backoff_delay(base, cap, attempt, fraction);
            prop_assert!(delay >= Duration::zero());
            prop_assert!(delay <= cap.max(Duration::zero()));
            let ceiling = backoff_ceiling(base, cap, attempt);
            prop_assert!(delay <= ceiling);
            prop_assert!(backoff_ceiling(base, cap, attempt.saturating_add(1)) >= ceiling);
        }
    }
}
