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
/// [`TouchStore::count_day_touches`] answers, for a page of contacts at once, the whole
/// touch count of each contact's day: its `MessageSent` activities since the start of
/// the day plus its queued touches as above, due before the day's end.
///
/// # Implementing
/// One indexed count (PostgreSQL: the partial index of migration 0015); the batched
/// form in one round trip. The conformance cases in `crm-testkit`'s `store::touches`
/// are the executable contract.
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

    /// For each of `days`, in order (one answer each, repeats included): the
    /// contact's `MessageSent` activities with `occurred_at >= since` (every channel,
    /// as [`ActivityStore::count_activities`](crate::store::ActivityStore::count_activities)
    /// counts them) plus [`TouchStore::count_queued_touches`] with `before`. One
    /// consistent read over every entry. At most
    /// [`Page::MAX_LIMIT`](crate::store::Page::MAX_LIMIT) entries (`Invalid` past
    /// that); no entries, no answers.
    async fn count_day_touches(
        &self,
        workspace_id: WorkspaceId,
        days: &[ContactDay],
    ) -> Result<Vec<u64>, StoreError>;
}

/// One contact's local day, for [`TouchStore::count_day_touches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactDay {
    /// The contact.
    pub contact_id: ContactId,
    /// The start of its day: sent messages count from here (inclusive).
    pub since: DateTime<Utc>,
    /// The end of its day: queued messages due before it count.
    pub before: DateTime<Utc>,
}

/// `Invalid` when a batch of [`ContactDay`]s is over [`Page::MAX_LIMIT`](crate::store::Page::MAX_LIMIT).
pub fn validate_day_count(days: &[ContactDay]) -> Result<(), crate::error::ValidationError> {
    let max = usize::try_from(crate::store::Page::<()>::MAX_LIMIT).unwrap_or(usize::MAX);
    if days.len() > max {
        return Err(crate::error::ValidationError::new(
            "days",
            format!("at most {max} contacts at once"),
        ));
    }
    Ok(())
}
