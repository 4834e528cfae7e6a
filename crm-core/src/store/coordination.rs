//! Quotas and named leases: state that coordinates engines.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::model::LeaseGrant;
use crate::store::{QuotaDecision, QuotaKey};

/// Atomic counters with a cap, per workspace, counter and period.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait QuotaStore: Send + Sync + Debug {
    /// Consumes `amount` (at least 1, else `Invalid`) units of `key` if the total stays
    /// at or under `cap`; otherwise consumes nothing and answers `Exhausted`. MUST be
    /// atomic: however many callers race, the total never passes `cap`.
    async fn try_consume_quota(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
        cap: u32,
        amount: u32,
    ) -> Result<QuotaDecision, StoreError>;

    /// Units used of `key` (0 if never consumed).
    async fn quota_usage(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
    ) -> Result<u32, StoreError>;
}

/// Named, expiring, fenced leases, for example "the sequence runner of workspace W".
///
/// # Contract
/// A lease is identified by (workspace, name). At most one holder holds it at a time.
/// Its token starts at 1 and grows by one each time it is acquired while not held by
/// the acquirer: after another holder, after an expiry taken over, or after a release
/// (even by the same holder). Re-acquiring or renewing a lease one still holds, expired
/// or not, keeps the token.
///
/// # Clock skew
/// Several processes whose clocks differ by up to
/// [`MAX_CLOCK_SKEW`](crate::store::MAX_CLOCK_SKEW) MUST never hold one lease at once.
/// Expiry is judged by the caller's `now`, never by the backend's own clock, so the
/// contract is the same on every backend: a lease expires at the acquirer's
/// `now + ttl`, and another holder MUST NOT take it before its own `now` reaches
/// `expires_at + MAX_CLOCK_SKEW` (see [`takeover_cutoff`](crate::store::takeover_cutoff)),
/// and MUST get it from then on. By then the lease has run out by the holder's clock
/// too. The holder itself may re-acquire or renew at any time.
#[async_trait]
pub trait LeaseStore: Send + Sync + Debug {
    /// Takes the lease for `holder` until `now + ttl` if it is free, expired for
    /// another holder (`expires_at` at or before `now - MAX_CLOCK_SKEW`, see the
    /// trait's "Clock skew"), or already held by `holder` (then it is extended and
    /// keeps its token). Returns `None` while another holder's lease is live. MUST be
    /// atomic: however many callers race, at most one holds the lease.
    /// `ttl` must be positive and `name`/`holder` non-blank (`Invalid`).
    async fn try_acquire_lease(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<LeaseGrant>, StoreError>;

    /// Extends a held lease to `now + ttl`. `LeaseLost` if the stored holder or token
    /// differs from `grant`'s.
    async fn renew_lease(
        &self,
        grant: &LeaseGrant,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<LeaseGrant, StoreError>;

    /// Releases a held lease so the next acquirer need not wait for expiry. Returns
    /// `false` (and changes nothing) if `grant` no longer holds it.
    async fn release_lease(&self, grant: &LeaseGrant) -> Result<bool, StoreError>;
}
