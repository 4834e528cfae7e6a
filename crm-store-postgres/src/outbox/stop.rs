//! What an unsubscribe does to the outbox, inside its transaction: after taking the
//! advisory lock of its address or contact ([`super::gate_locks`]), cancel the
//! matching unsent messages (`pending`, or `in_flight` and not marked sending) and give
//! back the quota units they held, then read the ones already sending to report them. The lock orders the call against
//! every `begin_sends` of the same address or contact, and each statement's snapshot
//! sees what the previous holder committed.

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::Channel;
use crm_core::store::StoppedSends;
use sqlx::PgConnection;
use uuid::Uuid;

use super::gate_locks::{address_key, contact_key, lock_keys};
use super::{OUTBOX, finish};
use crate::error::db;
use crate::queue::insert_events_in;
use crate::rows::{IntoEntity, OutboxRow};

/// Cancels the unsent messages to an address (`$3` the channel, NULL for all).
const CANCEL_ADDRESS: &str = "
    WITH c AS MATERIALIZED (
        SELECT workspace_id, id FROM outbox_messages
        WHERE workspace_id = $1 AND recipient_key = $2 AND ($3::text IS NULL OR channel = $3)
          AND (status = 'pending' OR (status = 'in_flight' AND send_started_at IS NULL))
        ORDER BY id
        FOR UPDATE
    )
    UPDATE outbox_messages m
    SET status = 'cancelled', last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = $5, version = m.version + 1
    FROM c WHERE m.workspace_id = c.workspace_id AND m.id = c.id
    RETURNING m.*";

const SENDING_ADDRESS: &str = "
    SELECT id FROM outbox_messages
    WHERE workspace_id = $1 AND recipient_key = $2 AND ($3::text IS NULL OR channel = $3)
      AND status = 'in_flight' AND send_started_at IS NOT NULL
    ORDER BY id";

/// The consent in force for (`$2`, `$3`) is withdrawn.
macro_rules! withdrawn_sql {
    () => {
        "(SELECT status = 'withdrawn' FROM consents
          WHERE workspace_id = $1 AND contact_id = $2 AND channel = $3
          ORDER BY recorded_at DESC, id DESC LIMIT 1)"
    };
}

/// Cancels the unsent messages of a contact on a channel, if its consent in force is
/// withdrawn.
const CANCEL_CONTACT: &str = concat!(
    "WITH c AS MATERIALIZED (
        SELECT workspace_id, id FROM outbox_messages
        WHERE workspace_id = $1 AND contact_id = $2 AND channel = $3
          AND (status = 'pending' OR (status = 'in_flight' AND send_started_at IS NULL))
          AND coalesce(",
    withdrawn_sql!(),
    ", false)
        ORDER BY id
        FOR UPDATE
    )
    UPDATE outbox_messages m
    SET status = 'cancelled', last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = $5, version = m.version + 1
    FROM c WHERE m.workspace_id = c.workspace_id AND m.id = c.id
    RETURNING m.*"
);

const SENDING_CONTACT: &str = concat!(
    "SELECT id FROM outbox_messages
    WHERE workspace_id = $1 AND contact_id = $2 AND channel = $3
      AND status = 'in_flight' AND send_started_at IS NOT NULL
      AND coalesce(",
    withdrawn_sql!(),
    ", false)
    ORDER BY id"
);

/// Gives back every quota unit the cancelled messages (`$2`) held: none of them
/// reached the provider.
const RELEASE_CANCELLED: &str = "
    WITH gone AS (
        DELETE FROM quota_grants WHERE workspace_id = $1 AND outbox_id = ANY($2)
        RETURNING counter, period
    ), n AS (
        SELECT counter, period, count(*) AS n FROM gone GROUP BY counter, period
    )
    UPDATE quota_counters q SET used = greatest(q.used - n.n, 0)
    FROM n WHERE q.workspace_id = $1 AND q.counter = n.counter AND q.period = n.period";

/// Locks the address, cancels its unsent messages on `channel` (all for `None`) with
/// `reason` and reports them with those already sending.
pub(crate) async fn stop_address(
    conn: &mut PgConnection,
    ws: WorkspaceId,
    channel: Option<Channel>,
    address: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<StoppedSends, StoreError> {
    lock_keys(conn, vec![address_key(ws, address)]).await?;
    let cancelled = sqlx::query_as::<_, OutboxRow>(CANCEL_ADDRESS)
        .bind(ws.as_uuid())
        .bind(address)
        .bind(channel.map(|c| c.as_str()))
        .bind(reason)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    let cancelled = finish_cancelled(conn, ws, cancelled, reason, now).await?;
    let sending: Vec<Uuid> = sqlx::query_scalar(SENDING_ADDRESS)
        .bind(ws.as_uuid())
        .bind(address)
        .bind(channel.map(|c| c.as_str()))
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(stopped(cancelled, sending))
}

/// Locks the contact's sends; when its consent in force on `channel` is withdrawn,
/// cancels its unsent messages there and reports them with those already sending.
pub(crate) async fn stop_contact(
    conn: &mut PgConnection,
    ws: WorkspaceId,
    contact: ContactId,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<StoppedSends, StoreError> {
    let reason = format!("contact withdrew consent for {channel}");
    let cancelled = sqlx::query_as::<_, OutboxRow>(CANCEL_CONTACT)
        .bind(ws.as_uuid())
        .bind(contact.as_uuid())
        .bind(channel.as_str())
        .bind(reason.as_str())
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    let cancelled = finish_cancelled(conn, ws, cancelled, &reason, now).await?;
    let sending: Vec<Uuid> = sqlx::query_scalar(SENDING_CONTACT)
        .bind(ws.as_uuid())
        .bind(contact.as_uuid())
        .bind(channel.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(stopped(cancelled, sending))
}

/// Takes the lock of a contact's sends (before a consent entry is written).
pub(crate) async fn lock_contact(
    conn: &mut PgConnection,
    ws: WorkspaceId,
    contact: ContactId,
) -> Result<(), StoreError> {
    lock_keys(conn, vec![contact_key(ws, contact)]).await
}

/// Records what goes with each cancellation (events, enrollment release, the quota
/// units given back); answers the ids.
async fn finish_cancelled(
    conn: &mut PgConnection,
    ws: WorkspaceId,
    rows: Vec<OutboxRow>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessageId>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut appended = Vec::new();
    for row in rows {
        let stored = row.into_entity()?;
        appended.extend(finish::finished_in(conn, &stored, reason, now).await?);
        ids.push(stored.id);
    }
    insert_events_in(conn, &appended).await?;
    let uuids: Vec<Uuid> = ids.iter().map(OutboxMessageId::as_uuid).collect();
    sqlx::query(RELEASE_CANCELLED)
        .bind(ws.as_uuid())
        .bind(&uuids)
        .execute(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(ids)
}

fn stopped(mut cancelled: Vec<OutboxMessageId>, sending: Vec<Uuid>) -> StoppedSends {
    cancelled.sort_unstable();
    StoppedSends {
        cancelled,
        in_flight: sending
            .into_iter()
            .map(OutboxMessageId::from_uuid)
            .collect(),
    }
}
