//! Single-item conveniences built on the batched repository methods.
//!
//! A backend implements only the batched forms (one round trip for many items); these
//! extension traits give every store, and every narrower port, the single-item forms
//! for free. Import the trait to call its methods, for example
//! `use crm_core::store::ComplianceStoreExt;`.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crate::model::{ApprovalItem, Channel, Consent, Event, NewEvent, Suppression};
use crate::store::{ApprovalStore, ComplianceStore, EventStore, Inserted};

/// A batched store method answered a different number of items than it was asked
/// for: a backend broke the "one answer per item" contract.
#[derive(Debug, thiserror::Error)]
#[error("{operation} answered {answered} items for {asked} asked")]
pub struct AnswerCountMismatch {
    /// The batched method that answered.
    pub operation: &'static str,
    /// How many items it was asked about.
    pub asked: usize,
    /// How many answers it gave.
    pub answered: usize,
}

/// The single answer of a batched call asked about one item; any other count is a
/// backend failure (never silently read as "nothing found", which for a suppression
/// would let a send through).
fn only_answer<T>(operation: &'static str, answers: Vec<T>) -> Result<T, StoreError> {
    let answered = answers.len();
    let mut answers = answers.into_iter();
    match (answers.next(), answered) {
        (Some(answer), 1) => Ok(answer),
        _ => Err(StoreError::Backend {
            backend: "store",
            source: Box::new(AnswerCountMismatch {
                operation,
                asked: 1,
                answered,
            }),
        }),
    }
}

/// Single-pair forms of the [`ComplianceStore`] reads.
#[async_trait]
pub trait ComplianceStoreExt: ComplianceStore {
    /// The consent in force for one contact and channel, as
    /// [`ComplianceStore::current_consents`] answers it.
    async fn current_consent(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        channel: Channel,
    ) -> Result<Option<Consent>, StoreError> {
        let answers = self
            .current_consents(workspace_id, &[(contact_id, channel)])
            .await?;
        only_answer("current_consents", answers)
    }

    /// The suppression blocking `address` on `channel`, as
    /// [`ComplianceStore::find_suppressions`] answers it.
    async fn find_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let answers = self
            .find_suppressions(workspace_id, &[(channel, address)])
            .await?;
        only_answer("find_suppressions", answers)
    }
}

impl<T: ComplianceStore + ?Sized> ComplianceStoreExt for T {}

/// The single-event form of [`EventStore::append_events`].
#[async_trait]
pub trait EventStoreExt: EventStore {
    /// Appends one event with the contract of [`EventStore::append_events`]:
    /// idempotent on (workspace, `idempotency_key`), a duplicate returns the existing
    /// event with `created: false`; a reused id with a different key is `Conflict`.
    async fn append_event(&self, event: &NewEvent) -> Result<Inserted<Event>, StoreError> {
        let answers = self.append_events(std::slice::from_ref(event)).await?;
        only_answer("append_events", answers)
    }
}

impl<T: EventStore + ?Sized> EventStoreExt for T {}

/// The single-message form of [`ApprovalStore::find_approvals_for_outbox`].
#[async_trait]
pub trait ApprovalStoreExt: ApprovalStore {
    /// The approval item of one outbox message, if one exists.
    async fn find_approval_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_id: OutboxMessageId,
    ) -> Result<Option<ApprovalItem>, StoreError> {
        let answers = self
            .find_approvals_for_outbox(workspace_id, &[outbox_message_id])
            .await?;
        only_answer("find_approvals_for_outbox", answers)
    }
}

impl<T: ApprovalStore + ?Sized> ApprovalStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;

    #[test]
    fn a_single_answer_is_taken() {
        assert_eq!(only_answer("op", vec![7]).ok(), Some(7));
    }

    #[test]
    fn a_wrong_number_of_answers_is_a_backend_failure() {
        for answers in [vec![], vec![Some(1), None]] {
            let err = only_answer("find_suppressions", answers).err();
            assert_eq!(err.map(|e| e.kind()), Some(StoreErrorKind::Backend));
        }
    }
}
