//! Counting a contact's touches for the daily touch limit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ContactId, WorkspaceId};

/// Counts the messages that touch a contact in a period: the runner's and the
/// forecast's daily touch limit.
///
/// # Contract
/// [`TouchStore::count_contact_touches`] counts the outbox messages of `contact_id` in
/// `workspace_id`, on every channel but [`Channel::ManualTask`](crate::model::Channel::ManualTask)
/// (a task for a person does not touch the contact), that are either
///
/// - `Sent` with `sent_at` in `[from, to)`, or
/// - still queued (`Pending`, `AwaitingApproval` or `InFlight`) with `not_before < to`:
///   a queued message goes in the period at the earliest, so it is counted there, and a
///   message still waiting from an earlier period is counted too (it goes now or later).
///
/// `Failed`, `DeadLettered` and `Cancelled` messages never count, nor do messages of
/// other contacts or workspaces, nor messages without a contact. The count is one
/// consistent read. `from > to` is `Invalid`.
///
/// # Implementing
/// One indexed count (PostgreSQL: the partial index of migration 0015). The conformance
/// cases in `crm-testkit`'s `store::touches` are the executable contract.
#[async_trait]
pub trait TouchStore: Send + Sync + 'static {
    /// How many messages touch `contact_id` in `[from, to)` (see the trait's contract).
    async fn count_contact_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// Refuses a period that ends before it begins.
pub fn validate_touch_period(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), crate::error::ValidationError> {
    if from > to {
        return Err(crate::error::ValidationError::new(
            "touches.period",
            "from must not be after to",
        ));
    }
    Ok(())
}
