//! What a batch did ([`DispatchReport`]) and why a batch could not run ([`DispatchError`]).

use crate::error::StoreError;

/// What happened to one claimed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Handed to the provider (or the dry-run adapter) and recorded as sent.
    Sent,
    /// Parked for a person's approval.
    HeldForApproval,
    /// Withdrawn: enrollment stopped, approval rejected or expired, suppressed,
    /// consent withdrawn, not on the allowlist.
    Cancelled,
    /// Failed for good (permanent provider error, invalid recipient, no contact).
    Failed,
    /// Retries exhausted.
    DeadLettered,
    /// A provider error will be retried later (the attempt counts).
    Retried,
    /// Not sent yet and the attempt given back: quota exhausted or channel paused.
    Postponed,
    /// A store or policy error interrupted it; its lease is left to expire and be
    /// reaped, so another claim picks it up.
    LeftToExpire,
    /// Its workspace's settings could not be read, so nothing of that workspace is
    /// sent (fail closed): the message waits a short while, its attempt given back.
    SettingsUnavailable,
}

/// Counts per [`Outcome`] for one or more batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchReport {
    /// Messages claimed.
    pub claimed: u64,
    /// [`Outcome::Sent`].
    pub sent: u64,
    /// [`Outcome::HeldForApproval`].
    pub held_for_approval: u64,
    /// [`Outcome::Cancelled`].
    pub cancelled: u64,
    /// [`Outcome::Failed`].
    pub failed: u64,
    /// [`Outcome::DeadLettered`].
    pub dead_lettered: u64,
    /// [`Outcome::Retried`].
    pub retried: u64,
    /// [`Outcome::Postponed`].
    pub postponed: u64,
    /// [`Outcome::LeftToExpire`].
    pub left_to_expire: u64,
    /// [`Outcome::SettingsUnavailable`].
    pub settings_unavailable: u64,
}

impl DispatchReport {
    /// Counts one `outcome`.
    pub fn record(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Sent => &mut self.sent,
            Outcome::HeldForApproval => &mut self.held_for_approval,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Failed => &mut self.failed,
            Outcome::DeadLettered => &mut self.dead_lettered,
            Outcome::Retried => &mut self.retried,
            Outcome::Postponed => &mut self.postponed,
            Outcome::LeftToExpire => &mut self.left_to_expire,
            Outcome::SettingsUnavailable => &mut self.settings_unavailable,
        };
        *slot = slot.saturating_add(1);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &DispatchReport) {
        self.claimed = self.claimed.saturating_add(other.claimed);
        self.sent = self.sent.saturating_add(other.sent);
        self.held_for_approval = self
            .held_for_approval
            .saturating_add(other.held_for_approval);
        self.cancelled = self.cancelled.saturating_add(other.cancelled);
        self.failed = self.failed.saturating_add(other.failed);
        self.dead_lettered = self.dead_lettered.saturating_add(other.dead_lettered);
        self.retried = self.retried.saturating_add(other.retried);
        self.postponed = self.postponed.saturating_add(other.postponed);
        self.left_to_expire = self.left_to_expire.saturating_add(other.left_to_expire);
        self.settings_unavailable = self
            .settings_unavailable
            .saturating_add(other.settings_unavailable);
    }

    /// The count of one outcome.
    #[must_use]
    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Sent => self.sent,
            Outcome::HeldForApproval => self.held_for_approval,
            Outcome::Cancelled => self.cancelled,
            Outcome::Failed => self.failed,
            Outcome::DeadLettered => self.dead_lettered,
            Outcome::Retried => self.retried,
            Outcome::Postponed => self.postponed,
            Outcome::LeftToExpire => self.left_to_expire,
            Outcome::SettingsUnavailable => self.settings_unavailable,
        }
    }
}

/// Why a batch could not run at all. Errors on single messages never surface here:
/// they are counted in the [`DispatchReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// Claiming messages failed.
    #[error("claiming outbox messages failed")]
    Claim(#[source] StoreError),
    /// Returning expired leases to the queue failed.
    #[error("reaping expired outbox leases failed")]
    Reap(#[source] StoreError),
}

impl DispatchError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Claim(e) | Self::Reap(e) => e.is_retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_count_and_merge() {
        let mut a = DispatchReport::default();
        a.record(Outcome::Sent);
        a.record(Outcome::Sent);
        a.record(Outcome::Postponed);
        let mut b = DispatchReport {
            claimed: 3,
            ..DispatchReport::default()
        };
        b.merge(&a);
        assert_eq!(b.count(Outcome::Sent), 2);
        assert_eq!(b.postponed, 1);
        assert_eq!(b.claimed, 3);
    }

    #[test]
    fn only_unavailable_stores_make_retryable_dispatch_errors() {
        let e = DispatchError::Claim(StoreError::Unavailable {
            backend: "x",
            source: "down".into(),
        });
        assert!(e.is_retryable());
        assert!(!DispatchError::Reap(StoreError::not_found("outbox", "1")).is_retryable());
    }
}
