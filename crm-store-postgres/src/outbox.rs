//! The outbox (the one send path) and, in [`approvals`], the approval inbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::rules::{require_expected_version, require_new_version};
use crm_core::model::{ApprovalItem, OutboxMessage, OutboxStatus};
use crm_core::store::takeover_cutoff;
use crm_core::store::{
    ApprovalHold, Claim, Inserted, OutboxStore, Page, QuotaKey, Reschedule, Scope, SendStart,
    SendStartOutcome, SentMark, SentRecord,
};
use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Ref, db, db_refs, invalid, lease_miss};
use crate::page::{fetch_status_page, status_page_sql};
use crate::queue::insert_events_in;
use crate::rows::{IntoEntity, OutboxRow, entities};
use crate::sequences::enrollment_refs;

mod approvals;
mod approvals_batch;
mod enqueue;
mod finish;
mod gate_locks;
mod send_gate;
mod sent;
mod stop;
mod update;

pub(crate) use enqueue::insert_outbox;
pub(crate) use stop::{lock_contact, stop_address, stop_contact};
use update::{update_outbox_with_events, validate_update};

pub(super) const OUTBOX: &str = "outbox_message";
pub(super) const OUTBOX_VERSION: &str =
    "SELECT version FROM outbox_messages WHERE workspace_id = $1 AND id = $2";
/// The claim: lock due pending rows (skipping rows another claimer holds), earliest
/// first, and lease them in the same statement. `$5` is the workspace, or NULL for all.
macro_rules! claim_outbox_sql {
    ($scope:literal) => {
        concat!(
            "UPDATE outbox_messages m
             SET status = 'in_flight', lease_owner = $1, lease_token = m.lease_token + 1,
                 send_started_at = NULL,
                 lease_expires_at = $2, attempts = m.attempts + 1, updated_at = $3,
                 version = m.version + 1
             FROM (SELECT workspace_id, id FROM outbox_messages
                   WHERE status = 'pending' AND not_before <= $3 ",
            $scope,
            " ORDER BY not_before, id LIMIT $4
                   FOR UPDATE SKIP LOCKED) c
             WHERE m.workspace_id = c.workspace_id AND m.id = c.id
             RETURNING m.*"
        )
    };
}
const CLAIM_ALL: &str = claim_outbox_sql!("AND $5::uuid IS NULL");
const CLAIM_WORKSPACE: &str = claim_outbox_sql!("AND workspace_id = $5");

/// Marks the message sent, records the activity and moves the enrollment on, in one
/// statement: the activity is inserted only if the lease-checked update matched, and a
/// failing insert (a missing contact, a reused id) undoes the update. The enrollment
/// (`$15`, NULL for none) is compare-and-set on `$23`; a stale version changes nothing
/// and is not an error. The answer is the sent message and the state the enrollment
/// left (NULL if it was not moved), read by the self-join, for the change's events.
const MARK_SENT: &str = "
    WITH sent AS (
        UPDATE outbox_messages
        SET status = 'sent', provider_message_id = $4, sent_at = $5, updated_at = $5,
            send_started_at = coalesce(send_started_at, $5), lease_owner = NULL, lease_expires_at = NULL, version = version + 1
        WHERE workspace_id = $1 AND id = $2 AND status = 'in_flight' AND lease_token = $3
        RETURNING *
    ), activity AS (
        INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
            outbox_message_id, summary, details, occurred_at)
        SELECT $1, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM sent
        RETURNING id
    ), advanced AS (
        UPDATE enrollments e
        SET sequence_id = $16, sequence_version = $17, contact_id = $18, state = $19,
            current_step = $20, next_run_at = $21, updated_at = $22, version = e.version + 1
        FROM enrollments old
        WHERE e.workspace_id = $1 AND e.id = $15 AND e.version = $23
          AND old.workspace_id = e.workspace_id AND old.id = e.id
          AND EXISTS (SELECT 1 FROM sent)
        RETURNING old.state AS before_state
    )
    SELECT sent.*, (SELECT before_state FROM advanced) AS enrollment_before_state
    FROM sent";

const RESCHEDULE: &str = "
    UPDATE outbox_messages
    SET status = 'pending', not_before = $4, last_error = $5,
        attempts = CASE WHEN $6 THEN attempts ELSE greatest(attempts - 1, 0) END,
        send_started_at = NULL, lease_owner = NULL, lease_expires_at = NULL, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND status = 'in_flight' AND lease_token = $3
    RETURNING *";

/// Parks an in-flight message for approval: nothing was sent, so the claim's attempt is
/// given back.
pub(super) const HOLD: &str = "
    UPDATE outbox_messages
    SET status = 'awaiting_approval', attempts = greatest(attempts - 1, 0),
        send_started_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND status = 'in_flight' AND lease_token = $3
    RETURNING *";

const FINISH: &str = "
    UPDATE outbox_messages
    SET status = $4, last_error = $5, lease_owner = NULL, lease_expires_at = NULL,
        send_started_at = NULL, updated_at = $6, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND status = 'in_flight' AND lease_token = $3
    RETURNING *";

pub(super) type PgQueryAs<'q, R> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

fn contact_ref(m: &OutboxMessage) -> [Ref; 1] {
    [Ref::new(
        "outbox_messages_contact_fk",
        "contact",
        m.contact_id.map(|id| id.as_uuid()),
    )]
}

/// `claim.now + claim.lease_ttl`, or `Invalid` if it leaves the calendar.
fn lease_expiry(claim: &Claim) -> Result<DateTime<Utc>, StoreError> {
    claim.validate()?;
    claim
        .now
        .checked_add_signed(claim.lease_ttl)
        .ok_or_else(|| invalid("claim.lease_ttl", "is too long"))
}

/// `$n` for an optional workspace scope.
pub(super) fn scope_id(scope: Scope) -> Option<Uuid> {
    scope.workspace().map(|ws| ws.as_uuid())
}

impl PostgresStore {
    /// Runs a lease-checked outbox update; no row back means `NotFound` or `LeaseLost`.
    async fn leased_outbox(
        &self,
        q: PgQueryAs<'_, OutboxRow>,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        refs: &[Ref],
    ) -> Result<OutboxMessage, StoreError> {
        match q
            .fetch_optional(&self.pool)
            .await
            .map_err(db_refs(OUTBOX, refs))?
        {
            Some(row) => row.into_entity(),
            None => Err(lease_miss(
                &self.pool,
                OUTBOX_VERSION,
                OUTBOX,
                workspace_id,
                id.as_uuid(),
            )
            .await),
        }
    }

    /// The error for a `SentRecord` whose activity or enrollment (`field`) belongs to
    /// another workspace: `NotFound` or `LeaseLost` as for any lease-checked call, else
    /// `Invalid`.
    async fn foreign_record_error(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        field: &'static str,
    ) -> StoreError {
        let held = sqlx::query_scalar::<_, bool>(
            "SELECT status = 'in_flight' AND lease_token = $3 FROM outbox_messages
             WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .bind(lease_token)
        .fetch_optional(&self.pool)
        .await;
        match held {
            Ok(None) => StoreError::not_found(OUTBOX, id),
            Ok(Some(false)) => StoreError::lease_lost(OUTBOX, id),
            Ok(Some(true)) => invalid(field, "must be the message's workspace"),
            Err(e) => db(OUTBOX)(e),
        }
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn enqueue_outbox(
        &self,
        message: &OutboxMessage,
    ) -> Result<Inserted<OutboxMessage>, StoreError> {
        message.validate()?;
        require_new_version(message.version)?;
        let mut conn = self.pool.acquire().await.map_err(db(OUTBOX))?;
        insert_outbox(&mut conn, message).await
    }

    async fn get_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
    ) -> Result<OutboxMessage, StoreError> {
        sqlx::query_as::<_, OutboxRow>(
            "SELECT * FROM outbox_messages WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OUTBOX))?
        .ok_or_else(|| StoreError::not_found(OUTBOX, id))?
        .into_entity()
    }

    async fn find_outbox_by_provider_id(
        &self,
        workspace_id: WorkspaceId,
        provider_message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        // Providers do not reuse ids; should two messages share one anyway, the answer
        // is the one with the smallest id, not whichever the plan meets first.
        sqlx::query_as::<_, OutboxRow>(
            "SELECT * FROM outbox_messages
             WHERE workspace_id = $1 AND provider_message_id = $2
             ORDER BY id LIMIT 1",
        )
        .bind(workspace_id.as_uuid())
        .bind(provider_message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OUTBOX))?
        .map(IntoEntity::into_entity)
        .transpose()
    }

    async fn list_outbox(
        &self,
        workspace_id: WorkspaceId,
        status: Option<OutboxStatus>,
        page: Page<OutboxMessageId>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        page.validate()?;
        fetch_status_page::<OutboxRow>(
            &self.pool,
            status_page_sql!("outbox_messages"),
            workspace_id,
            status.map(|s| s.as_str()),
            page.after.map(|id| id.as_uuid()),
            page.limit,
            OUTBOX,
        )
        .await
    }

    async fn claim_outbox(&self, claim: &Claim) -> Result<Vec<OutboxMessage>, StoreError> {
        let expires_at = lease_expiry(claim)?;
        let sql = match claim.scope {
            Scope::All => CLAIM_ALL,
            Scope::Workspace(_) => CLAIM_WORKSPACE,
        };
        let rows = sqlx::query_as::<_, OutboxRow>(sql)
            .bind(claim.worker.as_str())
            .bind(expires_at)
            .bind(claim.now)
            .bind(i64::from(claim.limit))
            .bind(scope_id(claim.scope))
            .fetch_all(&self.pool)
            .await
            .map_err(db(OUTBOX))?;
        let mut claimed = entities(rows)?;
        claimed.sort_by_key(|m| (m.not_before, m.id));
        Ok(claimed)
    }

    async fn begin_sends(
        &self,
        starts: &[SendStart],
        now: DateTime<Utc>,
    ) -> Result<Vec<SendStartOutcome>, StoreError> {
        self.begin_sends_tx(starts, now).await
    }

    async fn release_send_quota(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        key: &QuotaKey,
    ) -> Result<bool, StoreError> {
        self.release_send_quota_one(workspace_id, id, key).await
    }

    async fn mark_outbox_sent(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        sent: &SentRecord,
    ) -> Result<OutboxMessage, StoreError> {
        let a = &sent.activity;
        a.validate()?;
        let e = sent.enrollment.as_ref();
        if let Some(e) = e {
            require_expected_version(e.version)?;
        }
        let foreign = if a.workspace_id != workspace_id {
            Some("sent.activity.workspace_id")
        } else if e.is_some_and(|e| e.workspace_id != workspace_id) {
            Some("sent.enrollment.workspace_id")
        } else {
            None
        };
        if let Some(field) = foreign {
            // Refused, but a missing message or a lost lease is reported first.
            return Err(self
                .foreign_record_error(workspace_id, id, lease_token, field)
                .await);
        }
        let mut refs = vec![
            Ref::new(
                "activities_contact_fk",
                "contact",
                a.contact_id.map(|i| i.as_uuid()),
            ),
            Ref::new("activities_deal_fk", "deal", a.deal_id.map(|i| i.as_uuid())),
        ];
        if let Some(e) = e {
            refs.extend(enrollment_refs(e));
        }
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        let row = sqlx::query(MARK_SENT)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(sent.provider_message_id.clone())
            .bind(sent.sent_at)
            .bind(a.id.as_uuid())
            .bind(a.contact_id.map(|i| i.as_uuid()))
            .bind(a.deal_id.map(|i| i.as_uuid()))
            .bind(a.kind.as_str())
            .bind(a.channel.map(|c| c.as_str()))
            .bind(a.outbox_message_id.map(|i| i.as_uuid()))
            .bind(a.summary.clone())
            .bind(a.details.clone())
            .bind(a.occurred_at)
            .bind(e.map(|e| e.id.as_uuid()))
            .bind(e.map(|e| e.sequence_id.as_uuid()))
            .bind(e.map(|e| e.sequence_version))
            .bind(e.map(|e| e.contact_id.as_uuid()))
            .bind(e.map(|e| e.state.as_str()))
            .bind(e.map(|e| e.current_step))
            .bind(e.and_then(|e| e.next_run_at))
            .bind(e.map(|e| e.updated_at))
            .bind(e.map(|e| e.version))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(OUTBOX, &refs))?;
        let Some(row) = row else {
            drop(tx);
            return Err(lease_miss(
                &self.pool,
                OUTBOX_VERSION,
                OUTBOX,
                workspace_id,
                id.as_uuid(),
            )
            .await);
        };
        let before_state: Option<String> =
            row.try_get("enrollment_before_state").map_err(db(OUTBOX))?;
        let stored = OutboxRow::from_row(&row)
            .map_err(db(OUTBOX))?
            .into_entity()?;
        let appended = sent::sent_events(&stored, a, e, before_state.as_deref())?;
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(stored)
    }

    async fn mark_outbox_sent_many(
        &self,
        marks: &[SentMark],
    ) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError> {
        self.mark_sent_many_tx(marks).await
    }

    async fn reschedule_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        reschedule: &Reschedule,
    ) -> Result<OutboxMessage, StoreError> {
        let q = sqlx::query_as::<_, OutboxRow>(RESCHEDULE)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(reschedule.not_before)
            .bind(reschedule.reason.clone())
            .bind(reschedule.count_attempt);
        self.leased_outbox(q, workspace_id, id, &[]).await
    }

    async fn hold_outbox_for_approval(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<ApprovalHold, StoreError> {
        self.hold_with_item(workspace_id, id, lease_token, item, now)
            .await
    }

    async fn finish_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        status: OutboxStatus,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, StoreError> {
        if !matches!(
            status,
            OutboxStatus::Failed | OutboxStatus::DeadLettered | OutboxStatus::Cancelled
        ) {
            return Err(invalid(
                "status",
                "must be failed, dead_lettered or cancelled",
            ));
        }
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        let row = sqlx::query_as::<_, OutboxRow>(FINISH)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(status.as_str())
            .bind(reason.to_owned())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OUTBOX))?;
        let Some(row) = row else {
            drop(tx);
            return Err(lease_miss(
                &self.pool,
                OUTBOX_VERSION,
                OUTBOX,
                workspace_id,
                id.as_uuid(),
            )
            .await);
        };
        let stored = row.into_entity()?;
        let appended = finish::finished_in(&mut tx, &stored, reason, now).await?;
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(stored)
    }

    async fn reap_outbox_leases(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox_messages
             SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                 send_started_at = NULL, updated_at = $1, version = version + 1
             WHERE status = 'in_flight' AND lease_expires_at <= $3
               AND ($2::uuid IS NULL OR workspace_id = $2)",
        )
        .bind(now)
        .bind(scope_id(scope))
        .bind(takeover_cutoff(now))
        .execute(&self.pool)
        .await
        .map_err(db(OUTBOX))?;
        Ok(done.rows_affected())
    }

    async fn update_outbox(&self, message: &OutboxMessage) -> Result<OutboxMessage, StoreError> {
        validate_update(message)?;
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        let Some((stored, appended)) = update_outbox_with_events(&mut tx, message).await? else {
            drop(tx);
            return Err(self.outbox_update_miss(message).await);
        };
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(stored)
    }
}
