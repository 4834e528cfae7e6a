//! Arguments shared by many store methods: pages, scopes, claims, insert outcomes.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;

/// Keyset pagination: rows with an id greater than `after`, ascending by id, at most
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<I> {
    /// Return rows after this id (exclusive); `None` starts at the beginning.
    pub after: Option<I>,
    /// At most this many rows, 1 to [`Page::MAX_LIMIT`].
    pub limit: u32,
}

impl<I> Page<I> {
    /// The largest page a store returns.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first `limit` rows.
    #[must_use]
    pub const fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The `limit` rows after `id`.
    #[must_use]
    pub const fn after(id: I, limit: u32) -> Self {
        Self {
            after: Some(id),
            limit,
        }
    }

    /// Stores call this first: `limit` must be 1 to [`Page::MAX_LIMIT`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_limit(self.limit)
    }
}

/// Checks a row limit is 1 to [`Page::MAX_LIMIT`].
pub fn validate_limit(limit: u32) -> Result<(), ValidationError> {
    if (1..=Page::<()>::MAX_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "limit",
            format!("must be between 1 and {}", Page::<()>::MAX_LIMIT),
        ))
    }
}

/// Which tenants a maintenance or worker call covers.
///
/// Worker pools and reapers serve every tenant of a deployment; everything a user
/// triggers is scoped to one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One workspace.
    Workspace(WorkspaceId),
    /// Every workspace in the store.
    All,
}

impl Scope {
    /// Whether `workspace_id` is covered.
    #[must_use]
    pub fn covers(&self, workspace_id: WorkspaceId) -> bool {
        match self {
            Scope::Workspace(ws) => *ws == workspace_id,
            Scope::All => true,
        }
    }

    /// The workspace, if scoped to one.
    #[must_use]
    pub fn workspace(&self) -> Option<WorkspaceId> {
        match self {
            Scope::Workspace(ws) => Some(*ws),
            Scope::All => None,
        }
    }
}

/// A request to claim due rows (jobs or outbox messages) under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Tenants to claim from.
    pub scope: Scope,
    /// The claiming worker's name, recorded as lease owner.
    pub worker: String,
    /// The claimer's "now": rows due at or before it are claimable, and the lease runs
    /// until `now + lease_ttl`.
    pub now: DateTime<Utc>,
    /// Lease length.
    pub lease_ttl: Duration,
    /// At most this many rows.
    pub limit: u32,
    /// Job kinds to claim; empty means every kind. Ignored by outbox claims.
    pub kinds: Vec<String>,
}

impl Claim {
    /// A claim of up to `limit` rows across `scope`.
    #[must_use]
    pub fn new(
        scope: Scope,
        worker: impl Into<String>,
        now: DateTime<Utc>,
        lease_ttl: Duration,
        limit: u32,
    ) -> Self {
        Self {
            scope,
            worker: worker.into(),
            now,
            lease_ttl,
            limit,
            kinds: Vec::new(),
        }
    }

    /// Restricts a job claim to these kinds.
    #[must_use]
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Stores call this first: a worker name, a positive lease and a valid limit.
    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::error::require_non_blank("claim.worker", &self.worker)?;
        if self.lease_ttl <= Duration::zero() {
            return Err(ValidationError::new("claim.lease_ttl", "must be positive"));
        }
        validate_limit(self.limit)
    }
}

/// The outcome of an idempotent insert: the stored row, and whether this call created
/// it (`false` means an equal key existed and that row is returned unchanged).
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted<T> {
    /// The stored row.
    pub value: T,
    /// Whether this call created it.
    pub created: bool,
}

/// A quota counter for one period, e.g. `("send:email", 2026-11-22)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    /// Counter name.
    pub counter: String,
    /// The first day of the period the counter covers (a day, a month, ...).
    pub period: NaiveDate,
}

impl QuotaKey {
    /// A counter for `period`.
    #[must_use]
    pub fn new(counter: impl Into<String>, period: NaiveDate) -> Self {
        Self {
            counter: counter.into(),
            period,
        }
    }
}

/// The answer of an atomic quota consumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDecision {
    /// Consumed; `used` now counts this call.
    Granted {
        /// Units used in the period, including this call's.
        used: u32,
        /// Units left before the cap.
        remaining: u32,
    },
    /// Not consumed: it would pass the cap.
    Exhausted {
        /// Units used in the period.
        used: u32,
        /// The cap.
        cap: u32,
    },
}

impl QuotaDecision {
    /// Whether the units were granted.
    #[must_use]
    pub const fn is_granted(&self) -> bool {
        matches!(self, Self::Granted { .. })
    }
}
