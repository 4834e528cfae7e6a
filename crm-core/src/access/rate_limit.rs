//! A per-key request rate limit, in process memory (governor's GCRA keyed limiter).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::ids::ApiKeyId;

/// The default limit: 100 requests a minute per key.
pub const DEFAULT_REQUESTS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(100).unwrap();

/// A request refused by [`ApiKeyRateLimiter::check`]: the key may try again after
/// [`retry_after`](Self::retry_after) (an HTTP host answers 429 with `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {retry_after:?}")]
pub struct RateLimited {
    retry_after: StdDuration,
}

impl RateLimited {
    /// How long until the key's next request is allowed.
    #[must_use]
    pub fn retry_after(&self) -> StdDuration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds rounded up, at least 1: the
    /// value of a `Retry-After` header (which counts whole seconds, so 0 would invite
    /// an immediate retry that is still refused).
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// The engine's [`Clock`] as governor's clock: nanoseconds since the Unix epoch, so the
/// limiter follows the same (manual, under test) time as everything else.
#[derive(Debug, Clone)]
struct EngineClock(Arc<dyn Clock>);

impl GovernorClock for EngineClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        // Times before 1970 (only a broken clock) count as the epoch: governor's
        // arithmetic saturates, so a clock stepping back never panics.
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or(0);
        Nanos::from(u64::try_from(nanos).unwrap_or(0))
    }
}

/// governor's keyed limiter on the engine clock.
type KeyedLimiter =
    RateLimiter<ApiKeyId, DashMapStateStore<ApiKeyId>, EngineClock, NoOpMiddleware<Nanos>>;

/// Limits each API key to a number of requests a minute (default
/// [`DEFAULT_REQUESTS_PER_MINUTE`]).
///
/// The algorithm is GCRA (governor): a key may spend its whole minute's allowance in a
/// burst, after which one more request is allowed every `60 s / limit` (0.6 s at 100 a
/// minute). So 101 requests in quick succession see the 101st refused, a steady client
/// gets `limit` a minute, and no 60-second window holds more than `2 * limit - 1`
/// (a full burst, then the allowance replenished during the window).
///
/// **The limit is per process.** Its state lives in this value's memory: several host
/// processes behind a load balancer each allow the full limit (so a key gets up to
/// `limit` times the number of processes), and a restart forgets it. A host that
/// needs one limit across processes puts a shared limiter (a proxy, or the store) in
/// front.
///
/// Memory grows with the keys checked (one small entry each): check only keys that
/// [`authenticate`](crate::access::ApiKeys::authenticate)d, never a presented
/// prefix, and call [`retain_recent`](Self::retain_recent) now and then to forget idle
/// keys. Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct ApiKeyRateLimiter {
    limiter: Arc<KeyedLimiter>,
    clock: EngineClock,
    per_minute: NonZeroU32,
}

impl ApiKeyRateLimiter {
    /// A limiter allowing `requests_per_minute` per key, timed by `clock`.
    #[must_use]
    pub fn new(requests_per_minute: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        let clock = EngineClock(clock);
        Self {
            limiter: Arc::new(RateLimiter::dashmap_with_clock(
                Quota::per_minute(requests_per_minute),
                clock.clone(),
            )),
            clock,
            per_minute: requests_per_minute,
        }
    }

    /// A limiter allowing [`DEFAULT_REQUESTS_PER_MINUTE`] per key.
    #[must_use]
    pub fn with_default_limit(clock: Arc<dyn Clock>) -> Self {
        Self::new(DEFAULT_REQUESTS_PER_MINUTE, clock)
    }

    /// The limit, in requests a minute per key.
    #[must_use]
    pub fn requests_per_minute(&self) -> NonZeroU32 {
        self.per_minute
    }

    /// Counts one request of `key`: `Ok` if it is within the limit, else
    /// [`RateLimited`] with the time until the next one is allowed. A refused request
    /// does not count against the key.
    ///
    /// # Errors
    /// `RateLimited` when the key is over its limit.
    pub fn check(&self, key: ApiKeyId) -> Result<(), RateLimited> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Forgets keys whose allowance is full again (idle for at least a minute), which
    /// behave exactly like keys never seen.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys the limiter holds state for.
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

impl fmt::Debug for ApiKeyRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRateLimiter")
            .field("requests_per_minute", &self.per_minute)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::{Duration, TimeZone, Utc};

    fn limiter(per_minute: u32) -> (ApiKeyRateLimiter, ManualClock) {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap());
        let limit = NonZeroU32::new(per_minute).unwrap();
        (
            ApiKeyRateLimiter::new(limit, Arc::new(clock.clone())),
            clock,
        )
    }

    #[test]
    fn the_101st_request_in_a_minute_is_refused_with_retry_after() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap());
        let limiter = ApiKeyRateLimiter::with_default_limit(Arc::new(clock));
        assert_eq!(limiter.requests_per_minute().get(), 100);
        let key = ApiKeyId::new();
        for i in 0..100 {
            assert!(
                limiter.check(key).is_ok(),
                "request {i} is within the limit"
            );
        }
        let refused = limiter.check(key).unwrap_err();
        // One request is replenished every 60 s / 100 = 600 ms.
        assert_eq!(refused.retry_after(), StdDuration::from_millis(600));
        assert_eq!(refused.retry_after_secs(), 1);
    }

    #[test]
    fn allowance_comes_back_with_time_and_refusals_do_not_count() {
        let (limiter, clock) = limiter(2);
        let key = ApiKeyId::new();
        assert!(limiter.check(key).is_ok());
        assert!(limiter.check(key).is_ok());
        for _ in 0..5 {
            assert_eq!(
                limiter.check(key).unwrap_err().retry_after(),
                StdDuration::from_secs(30)
            );
        }
        clock.advance(Duration::seconds(10));
        let refused = limiter.check(key).unwrap_err();
        assert_eq!(refused.retry_after(), StdDuration::from_secs(20));
        assert_eq!(refused.retry_after_secs(), 20);
        clock.advance(Duration::seconds(20));
        assert!(
            limiter.check(key).is_ok(),
            "one request replenished after 30 s"
        );
        assert!(limiter.check(key).is_err());
        clock.advance(Duration::minutes(5));
        assert!(limiter.check(key).is_ok());
        assert!(
            limiter.check(key).is_ok(),
            "the full burst after a long pause"
        );
        assert!(limiter.check(key).is_err(), "but never more than the limit");
    }

    #[test]
    fn keys_are_limited_separately() {
        let (limiter, _clock) = limiter(1);
        let (a, b) = (ApiKeyId::new(), ApiKeyId::new());
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        assert!(
            limiter.check(b).is_ok(),
            "another key has its own allowance"
        );
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let (limiter, clock) = limiter(3);
        let (busy, idle) = (ApiKeyId::new(), ApiKeyId::new());
        assert!(limiter.check(idle).is_ok());
        clock.advance(Duration::minutes(2));
        assert!(limiter.check(busy).is_ok());
        limiter.retain_recent();
        assert_eq!(
            limiter.tracked_keys(),
            1,
            "only the recently used key is kept"
        );
        assert!(limiter.check(busy).is_ok() && limiter.check(busy).is_ok());
        assert!(limiter.check(busy).is_err(), "the kept key kept its count");
    }

    #[test]
    fn a_clock_stepping_back_never_panics_and_stays_limited() {
        let (limiter, clock) = limiter(1);
        let key = ApiKeyId::new();
        assert!(limiter.check(key).is_ok());
        clock.advance(Duration::hours(-1));
        assert!(limiter.check(key).is_err());
        clock.set(chrono::DateTime::<Utc>::MIN_UTC);
        assert!(limiter.check(key).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let at = |ms| RateLimited {
            retry_after: StdDuration::from_millis(ms),
        };
        assert_eq!(at(0).retry_after_secs(), 1);
        assert_eq!(at(1).retry_after_secs(), 1);
        assert_eq!(at(1000).retry_after_secs(), 1);
        assert_eq!(at(1001).retry_after_secs(), 2);
    }
}
