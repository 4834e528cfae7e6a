//! The outbox: every outbound message waits here until the dispatcher sends it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ContactId, EnrollmentId, OutboxMessageId, WorkspaceId};
use crate::model::rules::{no_nul_json, no_nul_opt, require_text, stored_time};
use crate::model::{Channel, Lease};
use crate::text_enum::text_enum;

text_enum! {
    /// Where an outbound message is in its life.
    pub enum OutboxStatus {
        /// Waiting for a human (or a rule) to approve it; not claimable.
        AwaitingApproval = "awaiting_approval",
        /// Ready to send at `not_before`; claimable.
        Pending = "pending",
        /// Claimed by a dispatcher under a lease.
        InFlight = "in_flight",
        /// Handed to the provider.
        Sent = "sent",
        /// Failed permanently (invalid recipient, rejected by the provider).
        Failed = "failed",
        /// Retries exhausted; `last_error` holds the reason.
        DeadLettered = "dead_lettered",
        /// Withdrawn before sending (rejected, suppressed, enrollment stopped).
        Cancelled = "cancelled",
    }
}

impl OutboxStatus {
    /// Whether the message can never be sent any more.
    #[must_use]
    pub const fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Failed | Self::DeadLettered | Self::Cancelled
        )
    }
}

/// One outbound message.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Id; also the idempotency key given to the provider.
    pub id: OutboxMessageId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Channel.
    pub channel: Channel,
    /// Channel-specific address (email, E.164 phone, IGSID, profile URL).
    pub recipient: String,
    /// The contact it goes to, in the same workspace.
    pub contact_id: Option<ContactId>,
    /// The enrollment that produced it.
    pub enrollment_id: Option<EnrollmentId>,
    /// The sequence step index (0-based) that produced it.
    pub step_index: Option<i32>,
    /// Subject line, for channels that have one.
    pub subject: Option<String>,
    /// Rendered body.
    pub body: String,
    /// Unique per workspace; enqueueing the same key twice yields the first message.
    pub idempotency_key: String,
    /// Status.
    pub status: OutboxStatus,
    /// Earliest send time.
    pub not_before: DateTime<Utc>,
    /// Send attempts so far (a claim counts as one).
    pub attempts: i32,
    /// The dispatcher's lease while in flight.
    pub lease: Option<Lease>,
    /// The provider's id once sent.
    pub provider_message_id: Option<String>,
    /// Last error or the final reason for failure, dead letter or cancellation.
    pub last_error: Option<String>,
    /// Extra data for adapters and approval context.
    pub metadata: serde_json::Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version; claims and completions bump it too.
    pub version: i64,
}

impl OutboxMessage {
    /// A pending message due at `now`.
    pub fn new(
        workspace_id: WorkspaceId,
        channel: Channel,
        recipient: impl Into<String>,
        body: impl Into<String>,
        idempotency_key: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let message = Self {
            id: OutboxMessageId::new(),
            workspace_id,
            channel,
            recipient: recipient.into().trim().to_owned(),
            contact_id: None,
            enrollment_id: None,
            step_index: None,
            subject: None,
            body: body.into(),
            idempotency_key: idempotency_key.into(),
            status: OutboxStatus::Pending,
            not_before: now,
            attempts: 0,
            lease: None,
            provider_message_id: None,
            last_error: None,
            metadata: serde_json::Value::Null,
            created_at: now,
            updated_at: now,
            sent_at: None,
            version: 1,
        };
        message.validate()?;
        Ok(message)
    }

    /// Sets the contact.
    #[must_use]
    pub fn with_contact(mut self, id: ContactId) -> Self {
        self.contact_id = Some(id);
        self
    }

    /// Sets the enrollment and step.
    #[must_use]
    pub fn with_enrollment(mut self, id: EnrollmentId, step_index: i32) -> Self {
        self.enrollment_id = Some(id);
        self.step_index = Some(step_index);
        self
    }

    /// Sets the subject.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the initial status (for example `AwaitingApproval`).
    #[must_use]
    pub fn with_status(mut self, status: OutboxStatus) -> Self {
        self.status = status;
        self
    }

    /// Delays the first send.
    #[must_use]
    pub fn with_not_before(mut self, not_before: DateTime<Utc>) -> Self {
        self.not_before = stored_time(not_before);
        self
    }

    /// Sets adapter metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Rules for a message being enqueued: [`validate_content`](Self::validate_content),
    /// and pending or awaiting approval.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_content()?;
        if matches!(self.status, OutboxStatus::InFlight) || self.status.is_final() {
            return Err(ValidationError::new(
                "outbox.status",
                "a new message must be pending or awaiting approval",
            ));
        }
        Ok(())
    }

    /// Rules for a message being edited with `update_outbox`:
    /// [`validate_content`](Self::validate_content), and awaiting approval, pending or
    /// cancelled.
    pub fn validate_update(&self) -> Result<(), ValidationError> {
        self.validate_content()?;
        if matches!(
            self.status,
            OutboxStatus::AwaitingApproval | OutboxStatus::Pending | OutboxStatus::Cancelled
        ) {
            Ok(())
        } else {
            Err(ValidationError::new(
                "outbox.status",
                "must be awaiting_approval, pending or cancelled",
            ))
        }
    }

    /// The rules of every written message whatever its status: recipient, body and
    /// idempotency key are not blank, and no text or metadata holds NUL.
    pub fn validate_content(&self) -> Result<(), ValidationError> {
        require_text("outbox.recipient", &self.recipient)?;
        require_text("outbox.body", &self.body)?;
        require_text("outbox.idempotency_key", &self.idempotency_key)?;
        no_nul_opt("outbox.subject", self.subject.as_deref())?;
        no_nul_opt(
            "outbox.provider_message_id",
            self.provider_message_id.as_deref(),
        )?;
        no_nul_opt("outbox.last_error", self.last_error.as_deref())?;
        no_nul_json("outbox.metadata", &self.metadata)
    }
}
