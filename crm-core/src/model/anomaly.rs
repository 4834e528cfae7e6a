//! Anomalies detected in recent activity, and the audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{AnomalyId, AuditEntryId, UserId, WorkspaceId};
use crate::model::Channel;
use crate::model::rules::{no_nul, no_nul_json, require_text, stored_time};
use crate::text_enum::text_enum;

text_enum! {
    /// How bad an anomaly is.
    pub enum Severity {
        /// Worth a look.
        Info = "info",
        /// Likely a problem.
        Warning = "warning",
        /// Sending health is at risk; may pause a channel.
        Error = "error",
    }
}

text_enum! {
    /// Where an anomaly is in its life.
    pub enum AnomalyStatus {
        /// Detected and not yet looked at.
        Active = "active",
        /// A person has seen it; still counts as active for deduplication.
        Acknowledged = "acknowledged",
        /// Over.
        Resolved = "resolved",
    }
}

impl AnomalyStatus {
    /// Active and acknowledged anomalies block a duplicate with the same key.
    #[must_use]
    pub const fn is_open(&self) -> bool {
        matches!(self, Self::Active | Self::Acknowledged)
    }
}

/// A detected anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Id.
    pub id: AnomalyId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The rule that fired, e.g. `"failure_rate"`.
    pub rule: String,
    /// The channel concerned, if any.
    pub channel: Option<Channel>,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AnomalyStatus,
    /// While open, at most one anomaly per workspace has this key.
    pub dedup_key: String,
    /// One-line description.
    pub summary: String,
    /// Measured values.
    pub details: serde_json::Value,
    /// First detection.
    pub detected_at: DateTime<Utc>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<UserId>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Anomaly {
    /// An active anomaly.
    pub fn new(
        workspace_id: WorkspaceId,
        rule: impl Into<String>,
        severity: Severity,
        dedup_key: impl Into<String>,
        summary: impl Into<String>,
        detected_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let detected_at = stored_time(detected_at);
        let anomaly = Self {
            id: AnomalyId::new(),
            workspace_id,
            rule: rule.into(),
            channel: None,
            severity,
            status: AnomalyStatus::Active,
            dedup_key: dedup_key.into(),
            summary: summary.into(),
            details: serde_json::Value::Null,
            detected_at,
            acknowledged_by: None,
            resolved_at: None,
            updated_at: detected_at,
            version: 1,
        };
        anomaly.validate()?;
        Ok(anomaly)
    }

    /// Rule and dedup key must not be blank; no text holds NUL.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("anomaly.rule", &self.rule)?;
        require_text("anomaly.dedup_key", &self.dedup_key)?;
        no_nul("anomaly.summary", &self.summary)?;
        no_nul_json("anomaly.details", &self.details)
    }
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Actor {
    /// A person.
    User(UserId),
    /// The engine itself (a rule, a job).
    System,
}

/// An append-only audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Id.
    pub id: AuditEntryId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Who.
    pub actor: Actor,
    /// What, e.g. `"score.override"`.
    pub action: String,
    /// The id of what it was done to, as text.
    pub subject: String,
    /// Details (reason, before/after).
    pub details: serde_json::Value,
    /// When.
    pub at: DateTime<Utc>,
}

impl AuditEntry {
    /// A new entry.
    pub fn new(
        workspace_id: WorkspaceId,
        actor: Actor,
        action: impl Into<String>,
        subject: impl Into<String>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let entry = Self {
            id: AuditEntryId::new(),
            workspace_id,
            actor,
            action: action.into(),
            subject: subject.into(),
            details,
            at: stored_time(at),
        };
        entry.validate()?;
        Ok(entry)
    }

    /// Action and subject must not be blank; no text holds NUL. Stores call this on
    /// every append.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("audit.action", &self.action)?;
        require_text("audit.subject", &self.subject)?;
        no_nul_json("audit.details", &self.details)
    }
}
