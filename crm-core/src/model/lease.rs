//! Leases: time-limited, fenced ownership of a row or a named resource.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::WorkspaceId;

/// Who holds a claimed job or outbox message, until when, and with which fencing token.
///
/// The token grows by one on every claim of the same row, so a worker whose lease
/// expired and was re-claimed by another can no longer complete it: the store checks
/// the token, not the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The claiming worker's name.
    pub owner: String,
    /// Fencing token; pass it back to complete, fail or reschedule.
    pub token: i64,
    /// When the lease runs out by the claimer's clock; the row becomes reapable
    /// [`MAX_CLOCK_SKEW`](crate::store::MAX_CLOCK_SKEW) later.
    pub expires_at: DateTime<Utc>,
}

/// A held named lease (for example "the sequence runner for workspace W").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// The workspace the lease is scoped to.
    pub workspace_id: WorkspaceId,
    /// The lease name.
    pub name: String,
    /// The holder's name.
    pub holder: String,
    /// Fencing token: grows by one each time the lease changes hands.
    pub token: i64,
    /// When the lease runs out unless renewed.
    pub expires_at: DateTime<Utc>,
}
