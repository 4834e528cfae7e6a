//! Recording accepted sends: `mark_outbox_sent` and its batched form
//! `mark_outbox_sent_many`, both under the store's one lock.

use std::collections::HashSet;

use crm_core::ids::{ActivityId, OutboxMessageId, WorkspaceId};
use crm_core::model::{NewEvent, OutboxMessage, OutboxStatus};
use crm_core::store::{SentMark, SentRecord};
use crm_core::{StoreError, ValidationError, events};

use crate::Tables;
use crate::queue::append_changes;
use crate::sequences::{apply_enrollment, check_update_enrollment};

/// The checks of a record that come before its lease: the activity and the enrollment
/// belong to the message's workspace, the activity can be stored; answers the
/// activity's event.
fn check_record(t: &Tables, ws: WorkspaceId, sent: &SentRecord) -> Result<NewEvent, StoreError> {
    check_workspaces(ws, sent)?;
    t.crm.check_activity(&sent.activity)?;
    let logged = events::activity_logged(&sent.activity)?;
    if let Some(e) = &sent.enrollment {
        // Validation only: a stale or vanished enrollment is skipped when applied.
        match check_update_enrollment(t, e) {
            Ok(_) | Err(StoreError::VersionConflict { .. } | StoreError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(logged)
}

/// The activity and the enrollment belong to the message's workspace (the contract
/// leaves it open; a timeline entry in another tenant is refused).
fn check_workspaces(ws: WorkspaceId, sent: &SentRecord) -> Result<(), StoreError> {
    if sent.activity.workspace_id != ws {
        return Err(ValidationError::new(
            "sent.activity.workspace_id",
            "must be the message's workspace",
        )
        .into());
    }
    if sent
        .enrollment
        .as_ref()
        .is_some_and(|e| e.workspace_id != ws)
    {
        return Err(ValidationError::new(
            "sent.enrollment.workspace_id",
            "must be the message's workspace",
        )
        .into());
    }
    Ok(())
}

/// Records one send whose record passed [`check_record`]; only the lease can refuse it.
fn apply(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    token: i64,
    sent: &SentRecord,
    logged: NewEvent,
) -> Result<OutboxMessage, StoreError> {
    let mut row = t.outbox.leased(ws, id, token)?;
    // A stale (or vanished) enrollment is skipped, as an `UPDATE ... WHERE version`
    // that matches nothing: the send is recorded regardless.
    let enrollment = sent
        .enrollment
        .as_ref()
        .and_then(|e| check_update_enrollment(t, e).ok());
    let m = &mut row.row;
    m.status = OutboxStatus::Sent;
    // The lease ends with the flight (the token stays in `fence`); `last_error` is kept.
    m.lease = None;
    m.provider_message_id.clone_from(&sent.provider_message_id);
    m.sent_at = Some(sent.sent_at);
    m.updated_at = sent.sent_at;
    m.version += 1;
    let mut changes = events::outbox_finished(m, None)?;
    changes.push(logged);
    t.crm.put_activity(sent.activity.clone());
    let stored = t.outbox.put(row);
    append_changes(t, &changes);
    if let Some(write) = enrollment {
        apply_enrollment(t, write);
    }
    Ok(stored)
}

/// `mark_outbox_sent`: the lease first, then the record's checks.
pub(crate) fn mark_sent(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    token: i64,
    sent: &SentRecord,
) -> Result<OutboxMessage, StoreError> {
    t.outbox.leased(ws, id, token)?;
    let logged = check_record(t, ws, sent)?;
    apply(t, ws, id, token, sent, logged)
}

/// `mark_outbox_sent_many`: every record checked first (a refusal fails the call and
/// stores nothing), then each mark applied under its own lease.
pub(crate) fn mark_sent_many(
    t: &mut Tables,
    marks: &[SentMark],
) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError> {
    let mut messages = HashSet::with_capacity(marks.len());
    let mut activities: HashSet<(WorkspaceId, ActivityId)> = HashSet::with_capacity(marks.len());
    let mut logged = Vec::with_capacity(marks.len());
    for mark in marks {
        if !messages.insert((mark.workspace_id, mark.id)) {
            return Err(ValidationError::new("marks", "name each message once").into());
        }
        let activity = &mark.sent.activity;
        if !activities.insert((activity.workspace_id, activity.id)) {
            return Err(StoreError::conflict(
                "activity",
                format!("activity {} is given twice", activity.id),
            ));
        }
        // As PostgreSQL writes a mark's activity only when its lease matched, only a
        // held message's record is checked against the tables.
        if t.outbox
            .leased(mark.workspace_id, mark.id, mark.lease_token)
            .is_ok()
        {
            logged.push(Some(check_record(t, mark.workspace_id, &mark.sent)?));
        } else {
            mark.sent.activity.validate()?;
            check_workspaces(mark.workspace_id, &mark.sent)?;
            logged.push(None);
        }
    }
    Ok(marks
        .iter()
        .zip(logged)
        .map(|(m, logged)| match logged {
            Some(logged) => apply(t, m.workspace_id, m.id, m.lease_token, &m.sent, logged),
            None => t
                .outbox
                .leased(m.workspace_id, m.id, m.lease_token)
                .map(|r| r.row),
        })
        .collect())
}
