//! Rows of the engines' tables: intake, sequences, outbox and approvals, events and
//! jobs, anomalies.

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{
    AnomalyId, ApprovalItemId, ApprovalRuleId, ContactId, EnrollmentId, EventId, IntakeRecordId,
    JobId, OutboxMessageId, SequenceId, UserId, WorkspaceId,
};
use crm_core::model::{
    Anomaly, ApprovalItem, ApprovalRule, Enrollment, Event, Fingerprint, IntakeRecord, Job,
    OutboxMessage, Sequence,
};
use serde_json::Value;
use uuid::Uuid;

use super::{IntoEntity, from_json, lease, opt_text, opt_to_u32};
use crate::error::{corrupt, parse_text};

/// `intake_records`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IntakeRow {
    workspace_id: Uuid,
    id: Uuid,
    source: String,
    source_ref: String,
    line: Option<i64>,
    raw: Value,
    fingerprint: Option<String>,
    status: String,
    duplicate_of: Option<Uuid>,
    errors: Value,
    contact_id: Option<Uuid>,
    received_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for IntakeRow {
    type Entity = IntakeRecord;
    fn into_entity(self) -> Result<IntakeRecord, StoreError> {
        Ok(IntakeRecord {
            id: IntakeRecordId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            source: parse_text(&self.source)?,
            source_ref: self.source_ref,
            line: self
                .line
                .map(u64::try_from)
                .transpose()
                .map_err(|e| corrupt("intake_records.line", e))?,
            raw: self.raw,
            fingerprint: self
                .fingerprint
                .as_deref()
                .map(Fingerprint::parse)
                .transpose()
                .map_err(|e| corrupt("intake_records.fingerprint", e))?,
            status: parse_text(&self.status)?,
            duplicate_of: self.duplicate_of.map(IntakeRecordId::from_uuid),
            errors: from_json("intake_records.errors", self.errors)?,
            contact_id: self.contact_id.map(ContactId::from_uuid),
            received_at: self.received_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `sequences`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SequenceRow {
    workspace_id: Uuid,
    id: Uuid,
    name: String,
    steps: Value,
    in_flight_policy: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    status: String,
    step_failure_policy: String,
}

impl IntoEntity for SequenceRow {
    type Entity = Sequence;
    fn into_entity(self) -> Result<Sequence, StoreError> {
        Ok(Sequence {
            id: SequenceId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            name: self.name,
            steps: from_json("sequences.steps", self.steps)?,
            in_flight_policy: parse_text(&self.in_flight_policy)?,
            status: parse_text(&self.status)?,
            step_failure_policy: parse_text(&self.step_failure_policy)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `enrollments`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EnrollmentRow {
    workspace_id: Uuid,
    id: Uuid,
    sequence_id: Uuid,
    sequence_version: i64,
    contact_id: Uuid,
    state: String,
    current_step: i32,
    next_run_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    end_reason: Option<String>,
    ended_at: Option<DateTime<Utc>>,
    step_message_id: Option<Uuid>,
}

impl IntoEntity for EnrollmentRow {
    type Entity = Enrollment;
    fn into_entity(self) -> Result<Enrollment, StoreError> {
        Ok(Enrollment {
            id: EnrollmentId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            sequence_id: SequenceId::from_uuid(self.sequence_id),
            sequence_version: self.sequence_version,
            contact_id: ContactId::from_uuid(self.contact_id),
            state: parse_text(&self.state)?,
            current_step: self.current_step,
            next_run_at: self.next_run_at,
            end_reason: self.end_reason,
            ended_at: self.ended_at,
            step_message_id: self.step_message_id.map(OutboxMessageId::from_uuid),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `outbox_messages`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    workspace_id: Uuid,
    id: Uuid,
    channel: String,
    recipient: String,
    contact_id: Option<Uuid>,
    enrollment_id: Option<Uuid>,
    step_index: Option<i32>,
    subject: Option<String>,
    body: String,
    idempotency_key: String,
    status: String,
    not_before: DateTime<Utc>,
    attempts: i32,
    lease_owner: Option<String>,
    lease_token: i64,
    lease_expires_at: Option<DateTime<Utc>>,
    provider_message_id: Option<String>,
    last_error: Option<String>,
    metadata: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    version: i64,
}

impl IntoEntity for OutboxRow {
    type Entity = OutboxMessage;
    fn into_entity(self) -> Result<OutboxMessage, StoreError> {
        Ok(OutboxMessage {
            id: OutboxMessageId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            channel: parse_text(&self.channel)?,
            recipient: self.recipient,
            contact_id: self.contact_id.map(ContactId::from_uuid),
            enrollment_id: self.enrollment_id.map(EnrollmentId::from_uuid),
            step_index: self.step_index,
            subject: self.subject,
            body: self.body,
            idempotency_key: self.idempotency_key,
            status: parse_text(&self.status)?,
            not_before: self.not_before,
            attempts: self.attempts,
            lease: lease(self.lease_owner, self.lease_token, self.lease_expires_at),
            provider_message_id: self.provider_message_id,
            last_error: self.last_error,
            metadata: self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            sent_at: self.sent_at,
            version: self.version,
        })
    }
}

/// `approval_items`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    workspace_id: Uuid,
    id: Uuid,
    outbox_message_id: Uuid,
    channel: String,
    status: String,
    confidence: Option<f64>,
    template_key: Option<String>,
    step_index: Option<i32>,
    original_body: String,
    edited_body: Option<String>,
    context: Value,
    reason: Option<String>,
    decided_by: Option<Uuid>,
    decided_by_rule: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for ApprovalRow {
    type Entity = ApprovalItem;
    fn into_entity(self) -> Result<ApprovalItem, StoreError> {
        Ok(ApprovalItem {
            id: ApprovalItemId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            outbox_message_id: OutboxMessageId::from_uuid(self.outbox_message_id),
            channel: parse_text(&self.channel)?,
            status: parse_text(&self.status)?,
            confidence: self.confidence,
            template_key: self.template_key,
            step_index: self.step_index,
            original_body: self.original_body,
            edited_body: self.edited_body,
            context: self.context,
            reason: self.reason,
            decided_by: self.decided_by.map(UserId::from_uuid),
            decided_by_rule: self.decided_by_rule.map(ApprovalRuleId::from_uuid),
            decided_at: self.decided_at,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `approval_rules`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApprovalRuleRow {
    workspace_id: Uuid,
    id: Uuid,
    channel: String,
    name: String,
    conditions: Value,
    daily_cap: Option<i64>,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for ApprovalRuleRow {
    type Entity = ApprovalRule;
    fn into_entity(self) -> Result<ApprovalRule, StoreError> {
        Ok(ApprovalRule {
            id: ApprovalRuleId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            channel: parse_text(&self.channel)?,
            name: self.name,
            conditions: from_json("approval_rules.conditions", self.conditions)?,
            daily_cap: opt_to_u32("approval_rules.daily_cap", self.daily_cap)?,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `events`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    position: i64,
    workspace_id: Uuid,
    id: Uuid,
    kind: String,
    subject: String,
    payload: Value,
    idempotency_key: String,
    occurred_at: DateTime<Utc>,
}

impl IntoEntity for EventRow {
    type Entity = Event;
    fn into_entity(self) -> Result<Event, StoreError> {
        Ok(Event {
            position: self.position,
            id: EventId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            kind: self.kind,
            subject: self.subject,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            occurred_at: self.occurred_at,
        })
    }
}

/// `jobs`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    workspace_id: Uuid,
    id: Uuid,
    kind: String,
    payload: Value,
    idempotency_key: Option<String>,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_token: i64,
    lease_expires_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl IntoEntity for JobRow {
    type Entity = Job;
    fn into_entity(self) -> Result<Job, StoreError> {
        Ok(Job {
            id: JobId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            kind: self.kind,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            status: parse_text(&self.status)?,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            lease: lease(self.lease_owner, self.lease_token, self.lease_expires_at),
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `anomalies`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AnomalyRow {
    workspace_id: Uuid,
    id: Uuid,
    rule: String,
    channel: Option<String>,
    severity: String,
    status: String,
    dedup_key: String,
    summary: String,
    details: Value,
    detected_at: DateTime<Utc>,
    acknowledged_by: Option<Uuid>,
    resolved_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for AnomalyRow {
    type Entity = Anomaly;
    fn into_entity(self) -> Result<Anomaly, StoreError> {
        Ok(Anomaly {
            id: AnomalyId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            rule: self.rule,
            channel: opt_text(self.channel)?,
            severity: parse_text(&self.severity)?,
            status: parse_text(&self.status)?,
            dedup_key: self.dedup_key,
            summary: self.summary,
            details: self.details,
            detected_at: self.detected_at,
            acknowledged_by: self.acknowledged_by.map(UserId::from_uuid),
            resolved_at: self.resolved_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}
