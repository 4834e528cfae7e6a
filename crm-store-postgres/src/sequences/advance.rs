//! The enrollment change-set ([`EnrollmentChange`]): one transaction whose first
//! statement is the compare-and-set on the enrollment, so a stale change takes no lock
//! on any other row and leaves nothing behind.

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::OutboxMessageId;
use crm_core::model::rules::{require_expected_version, require_new_version};
use crm_core::model::{Enrollment, NewEvent};
use crm_core::store::{EnrollmentAdvanced, EnrollmentChange};
use sqlx::PgConnection;

use super::{
    ChangedEnrollmentRow, ENROLLMENT, ENROLLMENT_VERSION, SET_ENROLLMENT, bind_enrollment,
    enrollment_refs,
};
use crate::PostgresStore;
use crate::error::{cas_miss, db, db_refs, invalid};
use crate::outbox::insert_outbox;
use crate::queue::insert_events_in;
use crate::rows::{ApprovalRow, OutboxRow, entities};

/// Cancels the enrollment's queued messages (`outbox_messages_enrollment_idx`); answers
/// them, for their events.
const CANCEL_QUEUED: &str = "
    UPDATE outbox_messages
    SET status = 'cancelled', last_error = $3, updated_at = $4, version = version + 1
    WHERE workspace_id = $1 AND enrollment_id = $2
      AND status IN ('pending', 'awaiting_approval')
    RETURNING *";

/// Withdraws the pending approval items of the messages `$2` just cancelled (after
/// them, so the message rows are always locked before their items); answers them, for
/// their events.
const WITHDRAW_PENDING: &str = "
    UPDATE approval_items
    SET status = 'withdrawn', reason = $3, decided_at = $4, updated_at = $4,
        version = version + 1
    WHERE workspace_id = $1 AND status = 'pending' AND outbox_message_id = ANY($2)
    RETURNING *";

/// The checks made before touching the database: `Invalid` for a change that sets both
/// `enqueue` and `cancel_queued`, a message of another workspace or enrollment, or a
/// message or version that `enqueue_outbox` / `update_enrollment` would refuse.
pub(super) fn validate(change: &EnrollmentChange) -> Result<(), StoreError> {
    let EnrollmentChange {
        enrollment,
        enqueue,
        cancel_queued,
        now: _,
    } = change;
    if enqueue.is_some() && cancel_queued.is_some() {
        return Err(invalid(
            "change",
            "enqueue and cancel_queued cannot both be set",
        ));
    }
    require_expected_version(enrollment.version)?;
    if let Some(message) = enqueue {
        if message.workspace_id != enrollment.workspace_id {
            return Err(invalid(
                "change.enqueue.workspace_id",
                "must be the enrollment's workspace",
            ));
        }
        if message.enrollment_id != Some(enrollment.id) {
            return Err(invalid(
                "change.enqueue.enrollment_id",
                "must be the enrollment's id",
            ));
        }
        message.validate()?;
        require_new_version(message.version)?;
    }
    Ok(())
}

impl PostgresStore {
    /// Applies a validated change in one transaction: the compare-and-set first (no
    /// row: roll back, then tell `NotFound` from `VersionConflict`), then the
    /// cancellation or the idempotent enqueue, then commit. Any error rolls it all back.
    pub(super) async fn advance(
        &self,
        change: &EnrollmentChange,
    ) -> Result<EnrollmentAdvanced, StoreError> {
        let EnrollmentChange {
            enrollment: e,
            enqueue,
            cancel_queued,
            now,
        } = change;
        let mut tx = self.pool.begin().await.map_err(db(ENROLLMENT))?;
        let row = bind_enrollment(sqlx::query_as::<_, ChangedEnrollmentRow>(SET_ENROLLMENT), e)
            .bind(*now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(ENROLLMENT, &enrollment_refs(e)))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db(ENROLLMENT))?;
            let (ws, id) = (e.workspace_id, e.id.as_uuid());
            return Err(cas_miss(
                &self.pool,
                ENROLLMENT_VERSION,
                ENROLLMENT,
                ws,
                id,
                e.version,
            )
            .await);
        };
        let (enrollment, mut appended) = row.into_change()?;
        let cancelled = match cancel_queued {
            Some(reason) => cancel_queued_in(&mut tx, e, reason, *now, &mut appended).await?,
            None => Vec::new(),
        };
        let enqueued = match enqueue {
            Some(message) => Some(insert_outbox(&mut tx, message).await?),
            None => None,
        };
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(ENROLLMENT))?;
        Ok(EnrollmentAdvanced {
            enrollment,
            enqueued,
            cancelled,
        })
    }
}

/// Cancels the queued messages of `e` and withdraws their pending approval items
/// inside `tx`, adding their events to `appended`; answers the cancelled messages.
pub(super) async fn cancel_queued_in(
    tx: &mut PgConnection,
    e: &Enrollment,
    reason: &str,
    now: DateTime<Utc>,
    appended: &mut Vec<NewEvent>,
) -> Result<Vec<OutboxMessageId>, StoreError> {
    let rows = sqlx::query_as::<_, OutboxRow>(CANCEL_QUEUED)
        .bind(e.workspace_id.as_uuid())
        .bind(e.id.as_uuid())
        .bind(reason)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ENROLLMENT))?;
    let mut messages = entities(rows)?;
    messages.sort_by_key(|m| m.id);
    let mut cancelled = Vec::with_capacity(messages.len());
    for message in &messages {
        appended.extend(events::outbox_finished(message, Some(reason))?);
        cancelled.push(message.id);
    }
    if !cancelled.is_empty() {
        let ids: Vec<_> = cancelled.iter().map(|id| id.as_uuid()).collect();
        let rows = sqlx::query_as::<_, ApprovalRow>(WITHDRAW_PENDING)
            .bind(e.workspace_id.as_uuid())
            .bind(ids)
            .bind(reason)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ENROLLMENT))?;
        let mut items = entities(rows)?;
        items.sort_by_key(|i| i.id);
        for item in &items {
            appended.extend(events::approval_decided(item)?);
        }
    }
    Ok(cancelled)
}
