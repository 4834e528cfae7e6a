//! The event catalogue: every event the engine appends, its payload, and when.
//!
//! Stores append these events themselves, in the same atomic call as the change they
//! record, so no path can change state without its event. The builders here are the
//! one definition both stores (and any third-party backend) share: a backend calls
//! the builder for the change it is making and appends the result with the change.
//! Events appended this way are *unrouted*; the engine's event router turns each into
//! the jobs its kind is routed to (rescoring, enrichment, automations, webhooks) and
//! marks it routed, so every event, from every path, reaches the routes.
//!
//! Payloads carry ids, states and field *names*, never addresses, names or bodies:
//! the event log is read by automations and exported by webhooks.
//!
//! Idempotency keys are derived from the change (entity id and the version it
//! produced), so retrying a store call never appends an event twice.
//!
//! | kind | subject | payload | appended when |
//! |---|---|---|---|
//! | `contact.created` | contact id | `contact_id`, `account_id` | a contact is inserted, on any path (API, intake, inbound) |
//! | `contact.updated` | contact id | `contact_id`, `version`, `fields` (names) | a contact is updated |
//! | `contact.merged` | contact id | `contact_id`, `intake_id`, `fields` | intake merges a record into an existing contact |
//! | `contact.enriched` | contact id | `contact_id`, `fields`, `providers` | enrichment writes results back |
//! | `account.created` / `account.updated` | account id | `account_id`, `version` | an account is inserted / updated |
//! | `deal.created` / `deal.updated` | deal id | `deal_id`, `contact_id`, `account_id`, `version`, `pipeline_id`, `stage_id` | a deal is inserted / updated |
//! | `deal.stage_changed` | deal id | `deal_id`, `contact_id`, `account_id`, `from`, `to`, `version` (the contact is what rescoring targets) | an update moves a deal to another stage |
//! | `activity.logged` | contact id (or activity id) | `activity_id`, `contact_id`, `deal_id`, `kind`, `channel`, `outbox_message_id` | an activity is recorded |
//! | `sequence.created` / `sequence.updated` | sequence id | `sequence_id`, `version` | a sequence is inserted / updated |
//! | `enrollment.enrolled` | enrollment id | `enrollment_id`, `contact_id`, `sequence_id` | an enrollment is inserted |
//! | `enrollment.step_sent` | enrollment id | `enrollment_id`, `step_index`, `outbox_message_id` | a step's message is marked sent |
//! | `enrollment.paused` … `enrollment.stopped` | enrollment id | `enrollment_id`, `contact_id`, `sequence_id`, `from`, `to`, `reason` | an enrollment changes into that state (see [`enrollment_transition`]) |
//! | `sequence.completed` | enrollment id | same as `enrollment.completed` | with `enrollment.completed`: the contact finished the sequence |
//! | `outbox.sent` | message id | `outbox_message_id`, `channel`, `contact_id`, `enrollment_id`, `step_index` | a message is marked sent |
//! | `outbox.failed` / `outbox.dead_lettered` / `outbox.cancelled` | message id | as `outbox.sent` plus `error` (classified, never a provider's raw body) | a message ends without being sent |
//! | `approval.requested` | item id | `approval_id`, `outbox_message_id`, `channel` | an approval item is inserted |
//! | `approval.decided` | item id | `approval_id`, `outbox_message_id`, `status`, `by_user`, `by_rule`, `edited` | an item is approved or rejected |
//! | `approval.expired` | item id | `approval_id`, `outbox_message_id` | an item expires |
//! | `anomaly.raised` / `anomaly.resolved` | anomaly id | `anomaly_id`, `rule`, `channel`, `severity` | an anomaly opens / is resolved |
//! | `score.changed` | contact id | `contact_id`, `score`, `tier`, `previous_score`, `previous_tier`, `breakdown` | a contact's score or tier changes |

use serde_json::{Value, json};

use crate::error::ValidationError;
use crate::model::scoring::ContactScore;
use crate::model::{
    Account, Activity, ActivityKind, Anomaly, ApprovalItem, ApprovalStatus, Contact, Deal,
    Enrollment, EnrollmentState, NewEvent, OutboxMessage, OutboxStatus, Sequence,
};

pub mod kinds;

use kinds::*;

fn event(
    template: (&str, String, String),
    workspace_id: crate::ids::WorkspaceId,
    payload: Value,
    occurred_at: chrono::DateTime<chrono::Utc>,
) -> Result<NewEvent, ValidationError> {
    let (kind, subject, key) = template;
    NewEvent::new(workspace_id, kind, subject, payload, key, occurred_at)
}

/// `contact.created` for a contact just inserted.
pub fn contact_created(contact: &Contact) -> Result<NewEvent, ValidationError> {
    event(
        (
            CONTACT_CREATED,
            contact.id.to_string(),
            format!("{CONTACT_CREATED}:{}", contact.id),
        ),
        contact.workspace_id,
        json!({ "contact_id": contact.id, "account_id": contact.account_id }),
        contact.created_at,
    )
}

/// The names of the contact fields that differ between `before` and `after`.
#[must_use]
pub fn changed_contact_fields(before: &Contact, after: &Contact) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            fields.push(name);
        }
    };
    check("first_name", before.first_name != after.first_name);
    check("last_name", before.last_name != after.last_name);
    check("email", before.email != after.email);
    check("phone", before.phone != after.phone);
    check("title", before.title != after.title);
    check("account_id", before.account_id != after.account_id);
    check("time_zone", before.time_zone != after.time_zone);
    check("linkedin_url", before.linkedin_url != after.linkedin_url);
    check("instagram_id", before.instagram_id != after.instagram_id);
    check("custom_fields", before.custom_fields != after.custom_fields);
    check("owner_id", before.owner_id != after.owner_id);
    fields
}

/// `contact.updated` for `after`, the stored result of updating `before`.
pub fn contact_updated(before: &Contact, after: &Contact) -> Result<NewEvent, ValidationError> {
    event(
        (
            CONTACT_UPDATED,
            after.id.to_string(),
            format!("{CONTACT_UPDATED}:{}:{}", after.id, after.version),
        ),
        after.workspace_id,
        json!({
            "contact_id": after.id,
            "version": after.version,
            "fields": changed_contact_fields(before, after),
        }),
        after.updated_at,
    )
}

/// `contact.merged`: intake record `intake_id` was merged into `contact`, changing
/// `fields`.
pub fn contact_merged(
    contact: &Contact,
    intake_id: impl std::fmt::Display,
    fields: &[String],
) -> Result<NewEvent, ValidationError> {
    event(
        (
            CONTACT_MERGED,
            contact.id.to_string(),
            format!("{CONTACT_MERGED}:{}:{intake_id}", contact.id),
        ),
        contact.workspace_id,
        json!({ "contact_id": contact.id, "intake_id": intake_id.to_string(), "fields": fields }),
        contact.updated_at,
    )
}

/// `contact.enriched`: enrichment wrote `fields` (names) from `providers` to
/// `contact` (the stored result).
pub fn contact_enriched(
    contact: &Contact,
    fields: &[String],
    providers: &[String],
) -> Result<NewEvent, ValidationError> {
    event(
        (
            CONTACT_ENRICHED,
            contact.id.to_string(),
            format!("{CONTACT_ENRICHED}:{}:{}", contact.id, contact.version),
        ),
        contact.workspace_id,
        json!({ "contact_id": contact.id, "fields": fields, "providers": providers }),
        contact.updated_at,
    )
}

/// `account.created` or `account.updated` for a stored account.
pub fn account_saved(account: &Account) -> Result<NewEvent, ValidationError> {
    let kind = if account.version == 1 {
        ACCOUNT_CREATED
    } else {
        ACCOUNT_UPDATED
    };
    event(
        (
            kind,
            account.id.to_string(),
            format!("{kind}:{}:{}", account.id, account.version),
        ),
        account.workspace_id,
        json!({ "account_id": account.id, "version": account.version }),
        account.updated_at,
    )
}

/// `deal.created`, or `deal.updated` plus `deal.stage_changed` when the stage moved,
/// for `after`, the stored result of inserting (`before` is `None`) or updating.
pub fn deal_saved(before: Option<&Deal>, after: &Deal) -> Result<Vec<NewEvent>, ValidationError> {
    let kind = if before.is_none() {
        DEAL_CREATED
    } else {
        DEAL_UPDATED
    };
    let mut events = vec![event(
        (
            kind,
            after.id.to_string(),
            format!("{kind}:{}:{}", after.id, after.version),
        ),
        after.workspace_id,
        json!({
            "deal_id": after.id,
            "contact_id": after.contact_id,
            "account_id": after.account_id,
            "version": after.version,
            "pipeline_id": after.pipeline_id,
            "stage_id": after.stage_id,
        }),
        after.updated_at,
    )?];
    if let Some(before) = before.filter(|b| b.stage_id != after.stage_id) {
        events.push(event(
            (
                DEAL_STAGE_CHANGED,
                after.id.to_string(),
                format!("{DEAL_STAGE_CHANGED}:{}:{}", after.id, after.version),
            ),
            after.workspace_id,
            json!({
                "deal_id": after.id,
                "contact_id": after.contact_id,
                "account_id": after.account_id,
                "version": after.version,
                "from": before.stage_id,
                "to": after.stage_id,
            }),
            after.updated_at,
        )?);
    }
    Ok(events)
}

/// `activity.logged` for a recorded activity. Its subject is the contact when there
/// is one, so a contact's events read as one stream.
pub fn activity_logged(activity: &Activity) -> Result<NewEvent, ValidationError> {
    let subject = activity
        .contact_id
        .map_or_else(|| activity.id.to_string(), |c| c.to_string());
    event(
        (
            ACTIVITY_LOGGED,
            subject,
            format!("{ACTIVITY_LOGGED}:{}", activity.id),
        ),
        activity.workspace_id,
        json!({
            "activity_id": activity.id,
            "contact_id": activity.contact_id,
            "deal_id": activity.deal_id,
            "kind": activity.kind,
            "channel": activity.channel,
            "outbox_message_id": activity.outbox_message_id,
        }),
        activity.occurred_at,
    )
}

/// `sequence.created` or `sequence.updated` for a stored sequence.
pub fn sequence_saved(sequence: &Sequence) -> Result<NewEvent, ValidationError> {
    let kind = if sequence.version == 1 {
        SEQUENCE_CREATED
    } else {
        SEQUENCE_UPDATED
    };
    event(
        (
            kind,
            sequence.id.to_string(),
            format!("{kind}:{}:{}", sequence.id, sequence.version),
        ),
        sequence.workspace_id,
        json!({ "sequence_id": sequence.id, "version": sequence.version }),
        sequence.updated_at,
    )
}

/// `enrollment.enrolled` for an enrollment just inserted.
pub fn enrollment_enrolled(enrollment: &Enrollment) -> Result<NewEvent, ValidationError> {
    event(
        (
            ENROLLMENT_ENROLLED,
            enrollment.id.to_string(),
            format!("{ENROLLMENT_ENROLLED}:{}", enrollment.id),
        ),
        enrollment.workspace_id,
        json!({
            "enrollment_id": enrollment.id,
            "contact_id": enrollment.contact_id,
            "sequence_id": enrollment.sequence_id,
        }),
        enrollment.created_at,
    )
}

/// The events of an enrollment's state change from `before` to `after` (its stored
/// result).
///
/// Moving into `Paused`, `Replied`, `Bounced`, `Unsubscribed`, `Completed`,
/// `NoResponse` (reported as completed), `Failed` or `Stopped` appends the matching
/// `enrollment.*` event; `Completed` and `NoResponse` also append
/// `sequence.completed`; leaving `Paused` for a running state appends
/// `enrollment.resumed`. Moves between running states (a step queued, a step done)
/// append nothing here: the step's own events record them. `reason` is the
/// enrollment's [`end_reason`](Enrollment::end_reason) after the change (a short
/// code, never free text from a person).
pub fn enrollment_transition(
    before: &Enrollment,
    after: &Enrollment,
) -> Result<Vec<NewEvent>, ValidationError> {
    use EnrollmentState as S;
    let reason = after.end_reason.as_deref();
    if before.state == after.state {
        return Ok(Vec::new());
    }
    let kinds: &[&str] = match after.state {
        S::Paused => &[ENROLLMENT_PAUSED],
        S::Replied => &[ENROLLMENT_REPLIED],
        S::Bounced => &[ENROLLMENT_BOUNCED],
        S::Unsubscribed => &[ENROLLMENT_UNSUBSCRIBED],
        S::Completed | S::NoResponse => &[ENROLLMENT_COMPLETED, SEQUENCE_COMPLETED],
        S::Failed => &[ENROLLMENT_FAILED],
        S::Stopped => &[ENROLLMENT_STOPPED],
        s if before.state == S::Paused && s.is_running() => &[ENROLLMENT_RESUMED],
        _ => &[],
    };
    kinds
        .iter()
        .map(|kind| {
            event(
                (
                    kind,
                    after.id.to_string(),
                    format!("{kind}:{}:{}", after.id, after.version),
                ),
                after.workspace_id,
                json!({
                    "enrollment_id": after.id,
                    "contact_id": after.contact_id,
                    "sequence_id": after.sequence_id,
                    "from": before.state,
                    "to": after.state,
                    "step": after.current_step,
                    "reason": reason,
                }),
                after.updated_at,
            )
        })
        .collect()
}

fn outbox_payload(message: &OutboxMessage) -> Value {
    json!({
        "outbox_message_id": message.id,
        "channel": message.channel,
        "contact_id": message.contact_id,
        "enrollment_id": message.enrollment_id,
        "step_index": message.step_index,
        "status": message.status,
        "attempts": message.attempts,
    })
}

/// The events of a message reaching a final status (its stored result): `outbox.sent`
/// plus `enrollment.step_sent` for a sequence step, or `outbox.failed`,
/// `outbox.dead_lettered`, `outbox.cancelled`. `error` is the classified reason,
/// never a provider's raw answer. A message that is not final yields nothing.
pub fn outbox_finished(
    message: &OutboxMessage,
    error: Option<&str>,
) -> Result<Vec<NewEvent>, ValidationError> {
    let kind = match message.status {
        OutboxStatus::Sent => OUTBOX_SENT,
        OutboxStatus::Failed => OUTBOX_FAILED,
        OutboxStatus::DeadLettered => OUTBOX_DEAD_LETTERED,
        OutboxStatus::Cancelled => OUTBOX_CANCELLED,
        _ => return Ok(Vec::new()),
    };
    let at = message.sent_at.unwrap_or(message.updated_at);
    let mut payload = outbox_payload(message);
    if let Some(error) = error {
        payload["error"] = Value::String(error.to_owned());
    }
    let mut events = vec![event(
        (
            kind,
            message.id.to_string(),
            format!("{kind}:{}", message.id),
        ),
        message.workspace_id,
        payload,
        at,
    )?];
    if let (OutboxStatus::Sent, Some(enrollment_id)) = (message.status, message.enrollment_id) {
        events.push(event(
            (
                ENROLLMENT_STEP_SENT,
                enrollment_id.to_string(),
                format!("{ENROLLMENT_STEP_SENT}:{}", message.id),
            ),
            message.workspace_id,
            json!({
                "enrollment_id": enrollment_id,
                "step_index": message.step_index,
                "outbox_message_id": message.id,
                "contact_id": message.contact_id,
            }),
            at,
        )?);
    }
    Ok(events)
}

/// `approval.requested` for an item just inserted.
pub fn approval_requested(item: &ApprovalItem) -> Result<NewEvent, ValidationError> {
    event(
        (
            APPROVAL_REQUESTED,
            item.id.to_string(),
            format!("{APPROVAL_REQUESTED}:{}", item.id),
        ),
        item.workspace_id,
        json!({
            "approval_id": item.id,
            "outbox_message_id": item.outbox_message_id,
            "channel": item.channel,
        }),
        item.created_at,
    )
}

/// `approval.decided` or `approval.expired` for an item that left `Pending` (its
/// stored result); nothing for an item still pending.
pub fn approval_decided(item: &ApprovalItem) -> Result<Option<NewEvent>, ValidationError> {
    let kind = match item.status {
        ApprovalStatus::Pending => return Ok(None),
        ApprovalStatus::Expired => APPROVAL_EXPIRED,
        _ => APPROVAL_DECIDED,
    };
    event(
        (kind, item.id.to_string(), format!("{kind}:{}", item.id)),
        item.workspace_id,
        json!({
            "approval_id": item.id,
            "outbox_message_id": item.outbox_message_id,
            "status": item.status,
            "by_user": item.decided_by,
            "by_rule": item.decided_by_rule,
            "edited": item.edited_body.is_some(),
        }),
        item.decided_at.unwrap_or(item.updated_at),
    )
    .map(Some)
}

/// `anomaly.raised` for a newly opened anomaly, or `anomaly.resolved` for one just
/// resolved; nothing for other changes.
pub fn anomaly_changed(
    before: Option<&Anomaly>,
    after: &Anomaly,
) -> Result<Option<NewEvent>, ValidationError> {
    let kind = match before {
        None => ANOMALY_RAISED,
        Some(b) if b.resolved_at.is_none() && after.resolved_at.is_some() => ANOMALY_RESOLVED,
        Some(_) => return Ok(None),
    };
    // The version makes a second resolution (after a reopening) its own event.
    event(
        (
            kind,
            after.id.to_string(),
            format!("{kind}:{}:{}", after.id, after.version),
        ),
        after.workspace_id,
        json!({
            "anomaly_id": after.id,
            "rule": after.rule,
            "channel": after.channel,
            "severity": after.severity,
        }),
        after.resolved_at.unwrap_or(after.detected_at),
    )
    .map(Some)
}

/// The `SendFailed` activity a store records with a message it ends `Failed` or
/// `DeadLettered` (its stored result) at `now`, so the contact's timeline and the
/// failure-rate anomaly rule see every failed send. `None` for other statuses and for
/// a message without a contact (an activity needs one).
pub fn send_failed_activity(
    message: &OutboxMessage,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Activity>, ValidationError> {
    let summary = match message.status {
        OutboxStatus::Failed => "Send failed",
        OutboxStatus::DeadLettered => "Send failed after its last retry",
        _ => return Ok(None),
    };
    let Some(contact_id) = message.contact_id else {
        return Ok(None);
    };
    let activity = Activity::for_contact(
        message.workspace_id,
        contact_id,
        ActivityKind::SendFailed,
        format!("{summary} ({})", message.channel),
        now,
    )?
    .with_channel(message.channel)
    .with_outbox_message(message.id)
    .with_details(json!({
        "status": message.status,
        "attempts": message.attempts,
        "error": reason,
    }));
    Ok(Some(activity))
}

/// `score.changed` for a contact whose stored score is now `after` and was
/// `before` (`None`: never scored): appended when the effective total or tier
/// changed, with the computed breakdown (rule names and points, no personal data).
/// Nothing when neither changed.
pub fn score_changed(
    before: Option<&ContactScore>,
    after: &ContactScore,
) -> Result<Option<NewEvent>, ValidationError> {
    let (total, tier) = (after.effective_total(), after.effective_tier());
    let previous = before.map(|b| (b.effective_total(), b.effective_tier()));
    if previous == Some((total, tier)) {
        return Ok(None);
    }
    // The key names the change: the computed value's time and the override's, so a
    // later change (even back to an earlier value) is a new event, a retry is not.
    let override_at = after
        .manual_override
        .as_ref()
        .map_or(0, |o| o.at.timestamp_micros());
    let at = after
        .manual_override
        .as_ref()
        .map_or(after.computed_at, |o| o.at.max(after.computed_at));
    event(
        (
            SCORE_CHANGED,
            after.contact_id.to_string(),
            format!(
                "{SCORE_CHANGED}:{}:{}:{override_at}:{total}:{tier}",
                after.contact_id,
                after.computed_at.timestamp_micros(),
            ),
        ),
        after.workspace_id,
        json!({
            "contact_id": after.contact_id,
            "score": total,
            "tier": tier,
            "previous_score": previous.map(|p| p.0),
            "previous_tier": previous.map(|p| p.1),
            "model_version": after.model_version,
            "overridden": after.manual_override.is_some(),
            "breakdown": after.breakdown,
        }),
        at,
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ContactId, SequenceId, WorkspaceId};
    use chrono::{TimeZone, Utc};

    fn enrollment(state: EnrollmentState, version: i64) -> Enrollment {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let mut e = Enrollment::new(
            WorkspaceId::new(),
            SequenceId::new(),
            1,
            ContactId::new(),
            now,
        );
        e.state = state;
        e.version = version;
        e
    }

    #[test]
    fn completion_appends_enrollment_and_sequence_completed() {
        let before = enrollment(EnrollmentState::StepSent, 3);
        let mut after = before.clone();
        after.state = EnrollmentState::Completed;
        after.version = 4;
        let events = enrollment_transition(&before, &after).unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, [ENROLLMENT_COMPLETED, SEQUENCE_COMPLETED]);
        assert_ne!(events[0].idempotency_key, events[1].idempotency_key);
        assert_eq!(events[0].payload["from"], "step_sent");
    }

    #[test]
    fn resuming_from_pause_is_an_event_but_running_moves_are_not() {
        let paused = enrollment(EnrollmentState::Paused, 2);
        let mut active = paused.clone();
        active.state = EnrollmentState::Active;
        active.version = 3;
        let resumed = enrollment_transition(&paused, &active).unwrap();
        assert_eq!(resumed[0].kind, ENROLLMENT_RESUMED);
        let mut pending = active.clone();
        pending.state = EnrollmentState::StepPending;
        assert!(enrollment_transition(&active, &pending).unwrap().is_empty());
    }

    #[test]
    fn a_stop_carries_the_enrollments_own_reason() {
        let running = enrollment(EnrollmentState::StepSent, 2);
        let mut stopped = running.clone();
        stopped.state = EnrollmentState::Stopped;
        stopped.end_reason = Some(crate::model::end_reasons::ACCOUNT_REPLY.to_owned());
        stopped.version = 3;
        let events = enrollment_transition(&running, &stopped).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, ENROLLMENT_STOPPED);
        assert_eq!(events[0].payload["reason"], "account_reply");
        assert_eq!(events[0].payload["to"], "stopped");
    }
}
