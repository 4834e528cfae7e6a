//! What a message reaching a final status without being sent writes with it, in the
//! same transaction: its events, a `SendFailed` activity for a failure
//! (`crm_core::events::send_failed_activity`), and the release of the enrollment that
//! waits for it.

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::model::{NewEvent, OutboxMessage};
use sqlx::PgConnection;

use super::OUTBOX;
use crate::error::{Ref, db, db_refs};
use crate::rows::{ActivityRow, IntoEntity};

/// Makes an enrollment that waits for this message's step due at `$4`, so the runner
/// moves it on promptly instead of at its old due time (or never). A version bump and
/// no state change, so no event; an enrollment that moved past the step is left alone.
const RELEASE_ENROLLMENT: &str = "
    UPDATE enrollments
    SET next_run_at = $4, updated_at = greatest(updated_at, $4), version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND state = 'step_pending' AND current_step = $3";

const INSERT_ACTIVITY: &str = "
    INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
        outbox_message_id, summary, details, occurred_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *";

/// Writes what goes with `message` (its stored result) ending `Failed` or
/// `DeadLettered` for `reason` at `now` (`finish_outbox`), on `conn` (the caller's
/// transaction), and answers the events to append with it: the message's
/// (`crm_core::events::outbox_finished`, with the reason), then the `SendFailed`
/// activity's `activity.logged`. An enrollment still `StepPending` on the message's
/// step becomes due at `now`; so it does for `Cancelled`, which records no activity.
pub(crate) async fn finished_in(
    conn: &mut PgConnection,
    message: &OutboxMessage,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, StoreError> {
    let mut appended = events::outbox_finished(message, Some(reason))?;
    if let Some(a) = events::send_failed_activity(message, reason, now)? {
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
pub(crate) async fn release(
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
