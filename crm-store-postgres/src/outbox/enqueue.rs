//! The idempotent outbox insert, shared by `enqueue_outbox` and the enrollment
//! change-set (`advance_enrollment`), which runs it inside its transaction.

use crm_core::StoreError;
use crm_core::model::{OutboxMessage, normalize_address};
use crm_core::store::Inserted;
use sqlx::PgConnection;

use super::{OUTBOX, contact_ref};
use crate::error::{db, db_refs};
use crate::rows::{IntoEntity, OutboxRow};

const INSERT_OUTBOX: &str = "
    INSERT INTO outbox_messages (workspace_id, id, channel, recipient, contact_id,
        enrollment_id, step_index, subject, body, idempotency_key, status, not_before,
        attempts, lease_owner, lease_token, lease_expires_at, provider_message_id,
        last_error, metadata, created_at, updated_at, sent_at, version, recipient_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
        $17, $18, $19, $20, $21, $22, $23, $24)
    ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
    RETURNING *";

const BY_KEY: &str =
    "SELECT * FROM outbox_messages WHERE workspace_id = $1 AND idempotency_key = $2";

/// Inserts `message` unless its idempotency key is taken, then returns the stored
/// message of that key. The caller has validated it.
///
/// Two statements on `conn`: inside a transaction they commit together; on a plain
/// connection the second only reads.
pub(crate) async fn insert_outbox(
    conn: &mut PgConnection,
    message: &OutboxMessage,
) -> Result<Inserted<OutboxMessage>, StoreError> {
    let lease = message.lease.as_ref();
    let inserted = sqlx::query_as::<_, OutboxRow>(INSERT_OUTBOX)
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
        .bind(lease.map_or(0, |l| l.token))
        .bind(lease.map(|l| l.expires_at))
        .bind(message.provider_message_id.clone())
        .bind(message.last_error.clone())
        .bind(message.metadata.clone())
        .bind(message.created_at)
        .bind(message.updated_at)
        .bind(message.sent_at)
        .bind(message.version)
        .bind(normalize_address(&message.recipient))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_refs(OUTBOX, &contact_ref(message)))?;
    if let Some(row) = inserted {
        return Ok(Inserted {
            value: row.into_entity()?,
            created: true,
        });
    }
    // The key is taken; messages are never deleted, so the holder is still there.
    let existing = sqlx::query_as::<_, OutboxRow>(BY_KEY)
        .bind(message.workspace_id.as_uuid())
        .bind(message.idempotency_key.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(Inserted {
        value: existing.into_entity()?,
        created: false,
    })
}
