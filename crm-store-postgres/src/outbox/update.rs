//! Changing a message outside the send path (`update_outbox`), shared with
//! `decide_approval`, which runs it inside its transaction.

use crm_core::StoreError;
use crm_core::model::{NewEvent, OutboxMessage, OutboxStatus, normalize_address};
use sqlx::PgConnection;

use super::finish::release;
use super::{OUTBOX, contact_ref};
use crate::PostgresStore;
use crate::error::{cas_error, db, db_refs, parse_text};
use crate::rows::{IntoEntity, OutboxRow};

/// Outside the send path only a message awaiting approval or pending may change.
const UPDATE_OUTBOX: &str = "
    UPDATE outbox_messages
    SET channel = $3, recipient = $4, contact_id = $5, enrollment_id = $6, step_index = $7,
        subject = $8, body = $9, idempotency_key = $10, status = $11, not_before = $12,
        attempts = $13, lease_owner = $14, lease_expires_at = $15,
        provider_message_id = $16, last_error = $17, metadata = $18, updated_at = $19,
        sent_at = $20, recipient_key = $22, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND version = $21
      AND status IN ('awaiting_approval', 'pending')
    RETURNING *";

/// The checks of `update_outbox` made before touching the database
/// ([`OutboxMessage::validate_update`]).
pub(super) fn validate_update(message: &OutboxMessage) -> Result<(), StoreError> {
    Ok(message.validate_update()?)
}

/// The compare-and-set update of a validated message on `conn`; `None` if it matched
/// no row (see [`PostgresStore::outbox_update_miss`]).
pub(super) async fn update_outbox_on(
    conn: &mut PgConnection,
    message: &OutboxMessage,
) -> Result<Option<OutboxMessage>, StoreError> {
    let lease = message.lease.as_ref();
    sqlx::query_as::<_, OutboxRow>(UPDATE_OUTBOX)
        .bind(message.workspace_id.as_uuid())
        .bind(message.id.as_uuid())
        .bind(message.channel.as_str())
        .bind(message.recipient.clone())
        .bind(message.contact_id.map(|id| id.as_uuid()))
        .bind(message.enrollment_id.map(|id| id.as_uuid()))
        .bind(message.step_index)
        .bind(message.subject.clone())
        .bind(message.body.clone())
        .bind(message.idempotency_key.clone())
        .bind(message.status.as_str())
        .bind(message.not_before)
        .bind(message.attempts)
        .bind(lease.map(|l| l.owner.clone()))
        .bind(lease.map(|l| l.expires_at))
        .bind(message.provider_message_id.clone())
        .bind(message.last_error.clone())
        .bind(message.metadata.clone())
        .bind(message.updated_at)
        .bind(message.sent_at)
        .bind(message.version)
        .bind(normalize_address(&message.recipient))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_refs(OUTBOX, &contact_ref(message)))?
        .map(IntoEntity::into_entity)
        .transpose()
}

/// [`update_outbox_on`], and what goes with a message it made final: its events
/// (without a reason: the caller's free text stays on the row), and for a
/// cancellation the release of the enrollment waiting for it, at the message's
/// `updated_at`. Answers the stored message and the events to append with it, in the
/// caller's transaction.
pub(super) async fn update_outbox_with_events(
    conn: &mut PgConnection,
    message: &OutboxMessage,
) -> Result<Option<(OutboxMessage, Vec<NewEvent>)>, StoreError> {
    let Some(stored) = update_outbox_on(conn, message).await? else {
        return Ok(None);
    };
    // The update matched only a pending or awaiting message, so a final status here
    // is the change that made it final.
    let appended = crm_core::events::outbox_finished(&stored, None)?;
    if stored.status == OutboxStatus::Cancelled {
        release(conn, &stored, stored.updated_at).await?;
    }
    Ok(Some((stored, appended)))
}

impl PostgresStore {
    /// Why an outbox update matched nothing: a missing row (`NotFound`), a message that
    /// may no longer change (`Conflict`, checked before the version, as it fails
    /// whatever version the caller read), or a stale version (`VersionConflict`).
    pub(super) async fn outbox_update_miss(&self, message: &OutboxMessage) -> StoreError {
        let current = sqlx::query_as::<_, (i64, String)>(
            "SELECT version, status FROM outbox_messages WHERE workspace_id = $1 AND id = $2",
        )
        .bind(message.workspace_id.as_uuid())
        .bind(message.id.as_uuid())
        .fetch_optional(&self.pool)
        .await;
        let (version, status) = match current {
            Ok(Some(current)) => current,
            Ok(None) => return StoreError::not_found(OUTBOX, message.id),
            Err(e) => return db(OUTBOX)(e),
        };
        let status: OutboxStatus = match parse_text(&status) {
            Ok(status) => status,
            Err(e) => return e,
        };
        if status == OutboxStatus::InFlight || status.is_final() {
            return StoreError::conflict(
                OUTBOX,
                format!("message {} is {status} and cannot be changed", message.id),
            );
        }
        cas_error(OUTBOX, message.id.as_uuid(), message.version, Some(version))
    }
}
