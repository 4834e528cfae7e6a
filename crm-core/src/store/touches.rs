//! Counting a contact's queued touches for the daily touch limit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ContactId, WorkspaceId};

/// Counts the messages still queued to a contact: with the messages it was sent that
/// day (its `MessageSent` activities), the runner's and the forecast's daily touch
/// limit.
///
/// # Contract
/// [`TouchStore::count_queued_touches`] counts the outbox messages of `contact_id` in
/// `workspace_id` that are still queued (`Pending`, `AwaitingApproval` or `InFlight`)
/// with `not_before < before`, on every channel but
/// [`Channel::ManualTask`](crate::model::Channel::ManualTask) (a task for a person
/// does not touch the contact). A queued message goes at `not_before` at the earliest,
/// so one due before the end of a day touches the contact that day, and one still
/// waiting from an earlier day counts too (it goes now or later).
///
/// Sent messages are not counted here (their `MessageSent` activity is, written in the
/// same store call that marks them sent, so a message is never counted twice or not at
/// all); `Failed`, `DeadLettered` and `Cancelled` messages never count, nor do messages
/// of other contacts or workspaces, nor messages without a contact. The count is one
/// consistent read.
///
/// # Implementing
/// One indexed count (PostgreSQL: the partial index of migration 0015). The conformance
/// case in `crm-testkit`'s `store::touches` is the executable contract.
#[async_trait]
pub trait TouchStore: Send + Sync + 'static {
    /// How many messages are queued to `contact_id` with `not_before < before` (see
    /// the trait's contract).
    async fn count_queued_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
