//! A store that fails once on demand: the inbound handler's transient failure, for the
//! scenario where a delivery whose handling failed is handled on the provider's retry.
//! Every call is passed to the real store, except the one armed failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::DynStore;
#[allow(clippy::wildcard_imports)]
use crm_core::ids::*;
#[allow(clippy::wildcard_imports)]
use crm_core::model::*;
#[allow(clippy::wildcard_imports)]
use crm_core::store::*;
use crm_core::{EmailAddress, StoreError};

/// The real store, except that the next `record_activity` after [`FailingOnce::arm`]
/// fails as a temporarily unavailable backend would.
#[derive(Debug)]
pub(crate) struct FailingOnce {
    inner: Arc<DynStore>,
    armed: AtomicBool,
}

impl FailingOnce {
    /// Passes every call to `inner` until armed.
    pub(crate) fn new(inner: Arc<DynStore>) -> Self {
        Self {
            inner,
            armed: AtomicBool::new(false),
        }
    }

    /// Makes the next `record_activity` fail.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn fail_once(&self) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: Self::NAME,
                source: "injected failure".into(),
            });
        }
        Ok(())
    }
}

impl NamedBackend for FailingOnce {
    const NAME: &'static str = "failing-once";
}

#[async_trait]
impl OutboxStore for FailingOnce {
    async fn begin_sends(
        &self,
        starts: &[SendStart],
        now: DateTime<Utc>,
    ) -> Result<Vec<SendStartOutcome>, StoreError> {
        self.inner.begin_sends(starts, now).await
    }

    async fn release_send_quota(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        key: &QuotaKey,
    ) -> Result<bool, StoreError> {
        self.inner.release_send_quota(workspace_id, id, key).await
    }

    async fn enqueue_outbox(
        &self,
        message: &OutboxMessage,
    ) -> Result<Inserted<OutboxMessage>, StoreError> {
        self.inner.enqueue_outbox(message).await
    }

    async fn get_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
    ) -> Result<OutboxMessage, StoreError> {
        self.inner.get_outbox(workspace_id, id).await
    }

    async fn find_outbox_by_provider_id(
        &self,
        workspace_id: WorkspaceId,
        provider_message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        self.inner
            .find_outbox_by_provider_id(workspace_id, provider_message_id)
            .await
    }

    async fn list_outbox(
        &self,
        workspace_id: WorkspaceId,
        status: Option<OutboxStatus>,
        page: Page<OutboxMessageId>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner.list_outbox(workspace_id, status, page).await
    }

    async fn claim_outbox(&self, claim: &Claim) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner.claim_outbox(claim).await
    }

    async fn mark_outbox_sent(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        sent: &SentRecord,
    ) -> Result<OutboxMessage, StoreError> {
        self.inner
            .mark_outbox_sent(workspace_id, id, lease_token, sent)
            .await
    }

    async fn mark_outbox_sent_many(
        &self,
        marks: &[SentMark],
    ) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError> {
        self.inner.mark_outbox_sent_many(marks).await
    }

    async fn reschedule_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        reschedule: &Reschedule,
    ) -> Result<OutboxMessage, StoreError> {
        self.inner
            .reschedule_outbox(workspace_id, id, lease_token, reschedule)
            .await
    }

    async fn hold_outbox_for_approval(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<ApprovalHold, StoreError> {
        self.inner
            .hold_outbox_for_approval(workspace_id, id, lease_token, item, now)
            .await
    }

    async fn finish_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        status: OutboxStatus,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, StoreError> {
        self.inner
            .finish_outbox(workspace_id, id, lease_token, status, reason, now)
            .await
    }

    async fn reap_outbox_leases(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.reap_outbox_leases(scope, now).await
    }

    async fn update_outbox(&self, message: &OutboxMessage) -> Result<OutboxMessage, StoreError> {
        self.inner.update_outbox(message).await
    }
}

#[async_trait]
impl ContactStore for FailingOnce {
    async fn insert_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        self.inner.insert_contact(contact).await
    }

    async fn get_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Contact, StoreError> {
        self.inner.get_contact(workspace_id, id).await
    }

    async fn get_contacts(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<Option<Contact>>, StoreError> {
        self.inner.get_contacts(workspace_id, ids).await
    }

    async fn find_contact_by_email(
        &self,
        workspace_id: WorkspaceId,
        email: &EmailAddress,
    ) -> Result<Option<Contact>, StoreError> {
        self.inner.find_contact_by_email(workspace_id, email).await
    }

    async fn find_contact_by_address(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Contact>, StoreError> {
        self.inner
            .find_contact_by_address(workspace_id, channel, address)
            .await
    }

    async fn update_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        self.inner.update_contact(contact).await
    }

    async fn list_contacts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError> {
        self.inner.list_contacts(workspace_id, page).await
    }
}

#[async_trait]
impl SequenceStore for FailingOnce {
    async fn insert_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        self.inner.insert_sequence(sequence).await
    }

    async fn get_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Sequence, StoreError> {
        self.inner.get_sequence(workspace_id, id).await
    }

    async fn update_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        self.inner.update_sequence(sequence).await
    }

    async fn get_sequence_version(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
        version: i64,
    ) -> Result<Sequence, StoreError> {
        self.inner
            .get_sequence_version(workspace_id, id, version)
            .await
    }

    async fn list_sequences(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SequenceId>,
    ) -> Result<Vec<Sequence>, StoreError> {
        self.inner.list_sequences(workspace_id, page).await
    }

    async fn insert_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        self.inner.insert_enrollment(enrollment).await
    }

    async fn get_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
    ) -> Result<Enrollment, StoreError> {
        self.inner.get_enrollment(workspace_id, id).await
    }

    async fn update_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        self.inner.update_enrollment(enrollment).await
    }

    async fn list_due_enrollments(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Enrollment>, StoreError> {
        self.inner
            .list_due_enrollments(workspace_id, now, limit)
            .await
    }

    async fn list_workspaces_with_due_enrollments(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WorkspaceId>, StoreError> {
        self.inner
            .list_workspaces_with_due_enrollments(now, limit)
            .await
    }

    async fn advance_enrollment(
        &self,
        change: &EnrollmentChange,
    ) -> Result<EnrollmentAdvanced, StoreError> {
        self.inner.advance_enrollment(change).await
    }

    async fn advance_enrollments(
        &self,
        changes: &[EnrollmentChange],
    ) -> Result<Vec<Result<EnrollmentAdvanced, StoreError>>, StoreError> {
        self.inner.advance_enrollments(changes).await
    }

    async fn list_enrollments(
        &self,
        workspace_id: WorkspaceId,
        filter: &EnrollmentFilter,
        page: Page<EnrollmentId>,
    ) -> Result<Vec<Enrollment>, StoreError> {
        self.inner
            .list_enrollments(workspace_id, filter, page)
            .await
    }
}

#[async_trait]
impl ActivityStore for FailingOnce {
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError> {
        self.fail_once()?;
        self.inner.record_activity(activity).await
    }

    async fn list_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
        limit: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        self.inner
            .list_activities(workspace_id, filter, limit)
            .await
    }

    async fn count_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
    ) -> Result<u64, StoreError> {
        self.inner.count_activities(workspace_id, filter).await
    }
}

#[async_trait]
impl ComplianceStore for FailingOnce {
    async fn record_consent(&self, consent: &Consent) -> Result<WithStopped<Consent>, StoreError> {
        self.inner.record_consent(consent).await
    }

    async fn current_consents(
        &self,
        workspace_id: WorkspaceId,
        keys: &[(ContactId, Channel)],
    ) -> Result<Vec<Option<Consent>>, StoreError> {
        self.inner.current_consents(workspace_id, keys).await
    }

    async fn add_suppression(
        &self,
        suppression: &Suppression,
    ) -> Result<WithStopped<Inserted<Suppression>>, StoreError> {
        self.inner.add_suppression(suppression).await
    }

    async fn find_suppressions(
        &self,
        workspace_id: WorkspaceId,
        targets: &[(Channel, &str)],
    ) -> Result<Vec<Option<Suppression>>, StoreError> {
        self.inner.find_suppressions(workspace_id, targets).await
    }

    async fn remove_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
        address: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .remove_suppression(workspace_id, channel, address)
            .await
    }

    async fn list_suppressions(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SuppressionId>,
    ) -> Result<Vec<Suppression>, StoreError> {
        self.inner.list_suppressions(workspace_id, page).await
    }
}

#[async_trait]
impl AuditStore for FailingOnce {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        self.inner.append_audit(entry).await
    }

    async fn list_audit(
        &self,
        workspace_id: WorkspaceId,
        subject: Option<&str>,
        page: Page<AuditEntryId>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.list_audit(workspace_id, subject, page).await
    }
}

#[async_trait]
impl WebhookStore for FailingOnce {
    async fn record_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        received_at: DateTime<Utc>,
        lease: Duration,
    ) -> Result<DeliveryClaim, StoreError> {
        self.inner
            .record_webhook_delivery(workspace_id, provider, delivery_id, received_at, lease)
            .await
    }

    async fn complete_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        completed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .complete_webhook_delivery(workspace_id, provider, delivery_id, completed_at)
            .await
    }

    async fn forget_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .forget_webhook_delivery(workspace_id, provider, delivery_id)
            .await
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_webhook_deliveries(before).await
    }
}
