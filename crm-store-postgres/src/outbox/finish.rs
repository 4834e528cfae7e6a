//! What a message reaching a final status without being sent writes with it, in the
//! same transaction: its events, a `SendFailed` activity for a failure, and the
//! release of the enrollment that waits for it.

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::model::{Activity, ActivityKind, NewEvent, OutboxMessage, OutboxStatus};
use serde_json::json;
use sqlx::PgConnection;

use super::OUTBOX;
use crate::error::{Ref, db, db_refs};
use crate::rows::{ActivityRow, IntoEntity};

/// Makes an enrollment that waits for this message's step due at `$4`, so the runner
/// moves it on instead of leaving it pending for ever. A running enrollment that has
/// moved past the step is left alone.
const RELEASE_ENROLLMENT: &str = "
    UPDATE enrollments SET next_run_at = $4, updated_at = $4, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND state = 'step_pending' AND current_step = $3";

const INSERT_ACTIVITY: &str = "
    INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
        outbox_message_id, summary, details, occurred_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *";

/// The `SendFailed` activity of a failed or dead-lettered message, if it has a contact
/// to put it on: a classified summary, never the provider's answer, which stays in
/// `details.error` as the caller classified it.
fn send_failed(
    message: &OutboxMessage,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<Activity>, StoreError> {
    let Some(contact_id) = message.contact_id else {
        return Ok(None);
    };
    let summary = match message.status {
        OutboxStatus::DeadLettered => format!("{} message dead-lettered", message.channel),
        _ => format!("{} message failed", message.channel),
    };
    let activity = Activity::for_contact(
        message.workspace_id,
        contact_id,
        ActivityKind::SendFailed,
        summary,
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

/// Writes what goes with `message` (its stored result) ending `Failed`,
/// `DeadLettered` or `Cancelled` for `reason` at `now`, on `conn` (the caller's
/// transaction), and answers the events to append with it: the message's
/// (`crm_core::events::outbox_finished`), and for a failure the `SendFailed` activity's
/// `activity.logged`. An enrollment still `StepPending` on the message's step becomes
/// due at `now`. A message in any other status writes and answers nothing.
pub(crate) async fn finished_in(
    conn: &mut PgConnection,
    message: &OutboxMessage,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, StoreError> {
    let failed = match message.status {
        OutboxStatus::Failed | OutboxStatus::DeadLettered => true,
        OutboxStatus::Cancelled => false,
        _ => return Ok(Vec::new()),
    };
    let mut appended = events::outbox_finished(message, reason)?;
    let activity = if failed {
        send_failed(message, reason.unwrap_or_default(), now)?
    } else {
        None
    };
    if let Some(a) = activity {
        let refs = [Ref::new(
            "activities_contact_fk",
            "contact",
            a.contact_id.map(|id| id.as_uuid()),
        )];
        let stored = sqlx::query_as::<_, ActivityRow>(INSERT_ACTIVITY)
            .bind(a.workspace_id.as_uuid())
            .bind(a.id.as_uuid())
            .bind(a.contact_id.map(|id| id.as_uuid()))
            .bind(a.deal_id.map(|id| id.as_uuid()))
            .bind(a.kind.as_str())
            .bind(a.channel.map(|c| c.as_str()))
            .bind(a.outbox_message_id.map(|id| id.as_uuid()))
            .bind(a.summary.clone())
            .bind(a.details.clone())
            .bind(a.occurred_at)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_refs("activity", &refs))?
            .into_entity()?;
        appended.push(events::activity_logged(&stored)?);
    }
    release(conn, message, now).await?;
    Ok(appended)
}

/// [`RELEASE_ENROLLMENT`] for a message of a sequence step.
async fn release(
    conn: &mut PgConnection,
    message: &OutboxMessage,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (Some(enrollment_id), Some(step)) = (message.enrollment_id, message.step_index) else {
        return Ok(());
    };
    sqlx::query(RELEASE_ENROLLMENT)
        .bind(message.workspace_id.as_uuid())
        .bind(enrollment_id.as_uuid())
        .bind(step)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(())
}
