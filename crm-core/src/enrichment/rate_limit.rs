//! Provider rate limits, enforced in process.
//!
//! # Decision
//! Limits are counted in process, per provider name, in fixed windows on the engine's
//! [`Clock`](crate::Clock) (so tests drive them with a `ManualClock`). A store-backed
//! counter would share the limit across host processes, but the store's quota
//! counters are per day, while provider limits are per second or minute; several
//! processes each get the full limit, so configure `max / processes` when scaling
//! out. The limit a provider reports ([`RateLimitState`]) is honoured as well: a
//! provider reporting no requests left is skipped until its reset time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::enrichment::RateLimitState;

/// At most `max` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window (0 blocks the provider).
    pub max: u32,
    /// Window length (must be positive; a non-positive window disables the limit).
    pub per: Duration,
}

impl RateLimit {
    /// `max` requests per `per`.
    #[must_use]
    pub const fn new(max: u32, per: Duration) -> Self {
        Self { max, per }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    used: u32,
    /// Set when the provider reported no requests left: skip until then.
    blocked_until: Option<DateTime<Utc>>,
}

/// Per-provider fixed-window counters. The lock is never held across `.await`.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: HashMap<&'static str, RateLimit>,
    windows: Mutex<HashMap<&'static str, Window>>,
}

impl RateLimiter {
    /// No limits: every request is allowed.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits `provider` to `limit`.
    #[must_use]
    pub fn with_limit(mut self, provider: &'static str, limit: RateLimit) -> Self {
        self.limits.insert(provider, limit);
        self
    }

    /// Takes one request of `provider` at `now` if its window allows it and it has
    /// not reported exhaustion; answers whether it did.
    pub fn try_acquire(&self, provider: &'static str, now: DateTime<Utc>) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self.limits.get(provider).copied();
        let window = windows.entry(provider).or_insert(Window {
            start: now,
            used: 0,
            blocked_until: None,
        });
        if let Some(until) = window.blocked_until {
            if now < until {
                return false;
            }
            window.blocked_until = None;
        }
        let Some(limit) = limit.filter(|l| l.per > Duration::zero()) else {
            return true;
        };
        if now >= window.start + limit.per || now < window.start {
            window.start = now;
            window.used = 0;
        }
        if window.used < limit.max {
            window.used += 1;
            true
        } else {
            false
        }
    }

    /// Records the state `provider` reported: with no requests left and a known reset
    /// time, it is skipped until `now + reset_after`.
    pub fn observe(&self, provider: &'static str, state: &RateLimitState, now: DateTime<Utc>) {
        let (Some(0), Some(reset)) = (state.remaining, state.reset_after) else {
            return;
        };
        let Ok(reset) = Duration::from_std(reset) else {
            return;
        };
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows.entry(provider).or_insert(Window {
            start: now,
            used: 0,
            blocked_until: None,
        });
        window.blocked_until = now.checked_add_signed(reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_window_allows_max_then_resets() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let l = RateLimiter::new().with_limit("p", RateLimit::new(2, Duration::seconds(60)));
        assert!(l.try_acquire("p", t));
        assert!(l.try_acquire("p", t + Duration::seconds(1)));
        assert!(!l.try_acquire("p", t + Duration::seconds(59)));
        assert!(l.try_acquire("p", t + Duration::seconds(60)));
        assert!(l.try_acquire("other", t));
    }

    #[test]
    fn reported_exhaustion_blocks_until_reset() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let l = RateLimiter::new();
        let state = RateLimitState {
            limit: Some(10),
            remaining: Some(0),
            reset_after: Some(std::time::Duration::from_secs(30)),
        };
        l.observe("p", &state, t);
        assert!(!l.try_acquire("p", t + Duration::seconds(29)));
        assert!(l.try_acquire("p", t + Duration::seconds(30)));
    }
}
