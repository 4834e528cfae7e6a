//! How far apart the clocks of processes sharing one store may be, and the rule that
//! keeps leases exclusive despite it.
//!
//! Every lease (a named lease, a claimed job, a claimed outbox message) expires at the
//! acquirer's `now + ttl`, by the acquirer's clock. Another process judges that expiry
//! by its own clock, which may run up to [`MAX_CLOCK_SKEW`] ahead. So a store lets
//! anyone but the holder take a lease over (or reap it) only once the taker's `now`
//! has passed `expires_at + MAX_CLOCK_SKEW`: by then the lease has run out by the
//! holder's clock too, so two processes never hold it at once.

use chrono::{DateTime, Duration, Utc};

/// The largest difference between the clocks of two processes sharing one store that
/// leases and claims stay exclusive under: 30 seconds.
///
/// The price is recovery time: the lease of a process that died is taken over
/// `MAX_CLOCK_SKEW` after it expired.
pub const MAX_CLOCK_SKEW: Duration = Duration::seconds(30);

/// The latest expiry that a caller whose clock reads `now` may take over or reap:
/// `now - MAX_CLOCK_SKEW`. A lease held by someone else is expired for this caller iff
/// its `expires_at` is at or before the returned instant.
///
/// Near the earliest representable instant nothing is expired (the minimum instant is
/// returned).
#[must_use]
pub fn takeover_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_signed(MAX_CLOCK_SKEW)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_now_minus_the_skew() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(takeover_cutoff(now), now - Duration::seconds(30));
        assert_eq!(
            takeover_cutoff(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MIN_UTC,
            "no overflow at the earliest instant"
        );
    }
}
