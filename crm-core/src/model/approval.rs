//! The human-in-the-loop approval inbox and graduated auto-approval rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, UserId, WorkspaceId};
use crate::model::Channel;
use crate::model::rules::{no_nul_json, no_nul_opt, require_text, stored_time};
use crate::text_enum::text_enum;

text_enum! {
    /// Where an approval item is in its life.
    pub enum ApprovalStatus {
        /// Waiting for a decision.
        Pending = "pending",
        /// Approved by a person or a rule.
        Approved = "approved",
        /// Rejected with a reason.
        Rejected = "rejected",
        /// Not decided within its time to live.
        Expired = "expired",
        /// No longer needs a decision: its enrollment stopped and its message was
        /// cancelled (the reason says why). Nobody judged the draft, so it does not
        /// end a template's clean streak.
        Withdrawn = "withdrawn",
    }
}

/// One pending send shown to a human.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalItem {
    /// Id.
    pub id: ApprovalItemId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The outbox message awaiting the decision; one item per message.
    pub outbox_message_id: OutboxMessageId,
    /// Channel of the message.
    pub channel: Channel,
    /// Status.
    pub status: ApprovalStatus,
    /// How sure the drafting side is, 0.0 to 1.0.
    pub confidence: Option<f64>,
    /// Template identity, for "approved N times in a row without edits" rules.
    pub template_key: Option<String>,
    /// Sequence step index (0-based), for step-number rules.
    pub step_index: Option<i32>,
    /// The text as drafted.
    pub original_body: String,
    /// The text as edited by the approver; what is sent when present.
    pub edited_body: Option<String>,
    /// Context shown to the approver (contact, previous messages, ...).
    pub context: serde_json::Value,
    /// Why a human is needed, or why it was rejected.
    pub reason: Option<String>,
    /// Who decided (a person), if anyone.
    pub decided_by: Option<UserId>,
    /// Which rule decided, if a rule did.
    pub decided_by_rule: Option<ApprovalRuleId>,
    /// When it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// When it expires if still pending.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl ApprovalItem {
    /// A pending item for `outbox_message_id`.
    pub fn pending(
        workspace_id: WorkspaceId,
        outbox_message_id: OutboxMessageId,
        channel: Channel,
        original_body: impl Into<String>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let (now, expires_at) = (stored_time(now), stored_time(expires_at));
        let item = Self {
            id: ApprovalItemId::new(),
            workspace_id,
            outbox_message_id,
            channel,
            status: ApprovalStatus::Pending,
            confidence: None,
            template_key: None,
            step_index: None,
            original_body: original_body.into(),
            edited_body: None,
            context: serde_json::Value::Null,
            reason: None,
            decided_by: None,
            decided_by_rule: None,
            decided_at: None,
            expires_at,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        item.validate()?;
        Ok(item)
    }

    /// Rules for a stored item.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("approval.original_body", &self.original_body)?;
        no_nul_opt("approval.edited_body", self.edited_body.as_deref())?;
        no_nul_opt("approval.template_key", self.template_key.as_deref())?;
        no_nul_opt("approval.reason", self.reason.as_deref())?;
        no_nul_json("approval.context", &self.context)?;
        if let Some(c) = self.confidence
            && !(0.0..=1.0).contains(&c)
        {
            return Err(ValidationError::new(
                "approval.confidence",
                "must be between 0 and 1",
            ));
        }
        if self.expires_at < self.created_at {
            return Err(ValidationError::new(
                "approval.expires_at",
                "must not precede created_at",
            ));
        }
        Ok(())
    }

    /// The text that will be sent if approved.
    #[must_use]
    pub fn body_to_send(&self) -> &str {
        self.edited_body.as_deref().unwrap_or(&self.original_body)
    }
}

/// Conditions of a graduated rule; all present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleConditions {
    /// Only steps with index at most this (0-based).
    pub max_step_index: Option<i32>,
    /// Only items with at least this confidence.
    pub min_confidence: Option<f64>,
    /// Only templates approved at least this many times in a row without edits.
    pub min_clean_approvals: Option<u32>,
}

/// An opt-in auto-approval rule for one workspace and channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// Id.
    pub id: ApprovalRuleId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The channel it applies to.
    pub channel: Channel,
    /// Display name.
    pub name: String,
    /// Conditions.
    pub conditions: RuleConditions,
    /// At most this many auto-approvals per day.
    pub daily_cap: Option<u32>,
    /// Disabled rules approve nothing.
    pub enabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl ApprovalRule {
    /// An enabled rule.
    pub fn new(
        workspace_id: WorkspaceId,
        channel: Channel,
        name: impl Into<String>,
        conditions: RuleConditions,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let rule = Self {
            id: ApprovalRuleId::new(),
            workspace_id,
            channel,
            name: name.into(),
            conditions,
            daily_cap: None,
            enabled: true,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Rules for a stored rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("approval_rule.name", &self.name)?;
        if let Some(c) = self.conditions.min_confidence
            && !(0.0..=1.0).contains(&c)
        {
            return Err(ValidationError::new(
                "approval_rule.min_confidence",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}
