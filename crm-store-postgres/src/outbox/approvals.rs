//! The approval inbox and graduated auto-approval rules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{
    ApprovalItem, ApprovalRule, ApprovalStatus, Channel, NewEvent, OutboxMessage,
};
use crm_core::store::{
    ApprovalDecided, ApprovalHold, ApprovalStore, Inserted, OutboxStore, Page, Scope,
};

use super::update::{update_outbox_with_events, validate_update};
use super::{HOLD, OUTBOX, OUTBOX_VERSION, PgQueryAs, scope_id};
use crate::PostgresStore;
use crate::error::{
    Ref, cas_error, cas_miss, current_version, db, db_refs, invalid, lease_miss, parse_text,
};
use crate::page::{fetch_status_page, status_page_sql};
use crate::queue::insert_events_in;
use crate::rows::{
    ApprovalRow, ApprovalRuleRow, IntoEntity, OutboxRow, aligned, entities, opt_u32, to_json,
};

const APPROVAL: &str = "approval_item";
const RULE: &str = "approval_rule";

const APPROVAL_VERSION: &str =
    "SELECT version FROM approval_items WHERE workspace_id = $1 AND id = $2";
const RULE_VERSION: &str = "SELECT version FROM approval_rules WHERE workspace_id = $1 AND id = $2";

/// The item of each outbox message, by position (`approval_items_outbox_key`).
const APPROVALS_FOR_OUTBOX: &str = "
    SELECT t.batch_ord, a.*
    FROM unnest($2::uuid[]) WITH ORDINALITY AS t(outbox_message_id, batch_ord)
    JOIN approval_items a
      ON a.workspace_id = $1 AND a.outbox_message_id = t.outbox_message_id";

const INSERT_APPROVAL: &str = "
    INSERT INTO approval_items (workspace_id, id, outbox_message_id, channel, status,
        confidence, template_key, step_index, original_body, edited_body, context, reason,
        decided_by, decided_by_rule, decided_at, expires_at, created_at, updated_at, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $19)
    ON CONFLICT (workspace_id, outbox_message_id) DO NOTHING
    RETURNING *";

/// The compare-and-set of an item, reading by a self-join the status it left: an item
/// leaving `Pending` appends its decision's event.
const CHANGE_APPROVAL: &str = "
    UPDATE approval_items a
    SET outbox_message_id = $3, channel = $4, status = $5, confidence = $6,
        template_key = $7, step_index = $8, original_body = $9, edited_body = $10,
        context = $11, reason = $12, decided_by = $13, decided_by_rule = $14,
        decided_at = $15, expires_at = $16, updated_at = $18, version = a.version + 1
    FROM approval_items old
    WHERE a.workspace_id = $1 AND a.id = $2 AND a.version = $19
      AND old.workspace_id = a.workspace_id AND old.id = a.id
    RETURNING a.*, old.status AS before_status";

/// A row written by [`CHANGE_APPROVAL`].
#[derive(Debug, sqlx::FromRow)]
struct ChangedApprovalRow {
    #[sqlx(flatten)]
    after: ApprovalRow,
    before_status: String,
}

impl ChangedApprovalRow {
    /// The stored item and, if it just left `Pending`, its decision's event.
    fn into_change(self) -> Result<(ApprovalItem, Vec<NewEvent>), StoreError> {
        let before: ApprovalStatus = parse_text(&self.before_status)?;
        let item = self.after.into_entity()?;
        let appended = if before == ApprovalStatus::Pending {
            events::approval_decided(&item)?.into_iter().collect()
        } else {
            Vec::new()
        };
        Ok((item, appended))
    }
}

/// The clean-approval streak of a template: its decisions newest first (an item
/// without `decided_at` sorts as the oldest, as `None` does in Rust), each flagged with
/// whether every decision up to it was an approval without edits; the streak is the
/// count of flagged rows. Reads the template's rows of `approval_items_streak_idx` in
/// index order, so no sort.
const CLEAN_STREAK: &str = "
    SELECT count(*) FROM (
        SELECT bool_and(status = 'approved' AND edited_body IS NULL) OVER (
                   ORDER BY decided_at DESC NULLS LAST, id DESC
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS clean
        FROM approval_items
        WHERE workspace_id = $1 AND template_key = $2
          AND status IN ('approved', 'rejected')
    ) decisions
    WHERE clean";

fn bind_approval<'q, R>(q: PgQueryAs<'q, R>, i: &ApprovalItem) -> PgQueryAs<'q, R> {
    q.bind(i.workspace_id.as_uuid())
        .bind(i.id.as_uuid())
        .bind(i.outbox_message_id.as_uuid())
        .bind(i.channel.as_str())
        .bind(i.status.as_str())
        .bind(i.confidence)
        .bind(i.template_key.clone())
        .bind(i.step_index)
        .bind(i.original_body.clone())
        .bind(i.edited_body.clone())
        .bind(i.context.clone())
        .bind(i.reason.clone())
        .bind(i.decided_by.map(|id| id.as_uuid()))
        .bind(i.decided_by_rule.map(|id| id.as_uuid()))
        .bind(i.decided_at)
        .bind(i.expires_at)
        .bind(i.created_at)
        .bind(i.updated_at)
        .bind(i.version)
}

fn approval_ref(i: &ApprovalItem) -> [Ref; 1] {
    [Ref::new(
        "approval_items_outbox_fk",
        OUTBOX,
        Some(i.outbox_message_id.as_uuid()),
    )]
}

/// The checks of `decide_approval` made before touching the database.
fn validate_decision(
    item: &ApprovalItem,
    message: Option<&OutboxMessage>,
) -> Result<(), StoreError> {
    item.validate()?;
    if !matches!(
        item.status,
        ApprovalStatus::Approved | ApprovalStatus::Rejected | ApprovalStatus::Expired
    ) {
        return Err(invalid(
            "approval.status",
            "a decision must be approved, rejected or expired",
        ));
    }
    if let Some(m) = message {
        if m.workspace_id != item.workspace_id || m.id != item.outbox_message_id {
            return Err(invalid("message", "must be the item's outbox message"));
        }
        validate_update(m)?;
    }
    Ok(())
}

impl PostgresStore {
    /// [`OutboxStore::hold_outbox_for_approval`](crm_core::store::OutboxStore::hold_outbox_for_approval)
    /// in one transaction: the lease-checked park locks the message, then the item is
    /// inserted beside it. An existing item that is already decided rolls the park back.
    pub(super) async fn hold_with_item(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<ApprovalHold, StoreError> {
        item.validate()?;
        require_new_version(item.version)?;
        if item.workspace_id != workspace_id || item.outbox_message_id != id {
            return Err(invalid(
                "outbox_message_id",
                "the item must be for the held message of this workspace",
            ));
        }
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        let parked = sqlx::query_as::<_, OutboxRow>(HOLD)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OUTBOX))?;
        let Some(parked) = parked else {
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
        let inserted = bind_approval(sqlx::query_as::<_, ApprovalRow>(INSERT_APPROVAL), item)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(APPROVAL, &approval_ref(item)))?;
        let item = match inserted {
            Some(row) => {
                let value = row.into_entity()?;
                insert_events_in(&mut tx, &[events::approval_requested(&value)?]).await?;
                Inserted {
                    value,
                    created: true,
                }
            }
            None => {
                // Items are never deleted, so the one holding the message is there.
                let existing = sqlx::query_as::<_, ApprovalRow>(
                    "SELECT * FROM approval_items
                     WHERE workspace_id = $1 AND outbox_message_id = $2",
                )
                .bind(workspace_id.as_uuid())
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(db(APPROVAL))?;
                Inserted {
                    value: existing.into_entity()?,
                    created: false,
                }
            }
        };
        if item.value.status != ApprovalStatus::Pending {
            // Already decided: undo the park; the caller acts on the decision under
            // its lease, which the rollback leaves as it was.
            tx.rollback().await.map_err(db(OUTBOX))?;
            let message = self.get_outbox(workspace_id, id).await?;
            return Ok(ApprovalHold { message, item });
        }
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(ApprovalHold {
            message: parked.into_entity()?,
            item,
        })
    }

    /// Why a decision stored nothing: the item's error first (`NotFound`,
    /// `VersionConflict`), else the message's, as `update_outbox` reports it.
    async fn decision_miss(
        &self,
        item: &ApprovalItem,
        message: Option<&OutboxMessage>,
    ) -> StoreError {
        let (ws, id) = (item.workspace_id, item.id.as_uuid());
        match current_version(&self.pool, APPROVAL_VERSION, APPROVAL, ws, id).await {
            Ok(Some(v)) if v == item.version => match message {
                Some(m) => self.outbox_update_miss(m).await,
                None => cas_error(APPROVAL, id, item.version, Some(v)),
            },
            Ok(current) => cas_error(APPROVAL, id, item.version, current),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl ApprovalStore for PostgresStore {
    async fn insert_approval(
        &self,
        item: &ApprovalItem,
    ) -> Result<Inserted<ApprovalItem>, StoreError> {
        item.validate()?;
        require_new_version(item.version)?;
        let mut tx = self.pool.begin().await.map_err(db(APPROVAL))?;
        let inserted = bind_approval(sqlx::query_as::<_, ApprovalRow>(INSERT_APPROVAL), item)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(APPROVAL, &approval_ref(item)))?;
        if let Some(row) = inserted {
            let value = row.into_entity()?;
            insert_events_in(&mut tx, &[events::approval_requested(&value)?]).await?;
            tx.commit().await.map_err(db(APPROVAL))?;
            return Ok(Inserted {
                value,
                created: true,
            });
        }
        drop(tx);
        // Items are never deleted, so the one holding the message is still there.
        let existing = sqlx::query_as::<_, ApprovalRow>(
            "SELECT * FROM approval_items WHERE workspace_id = $1 AND outbox_message_id = $2",
        )
        .bind(item.workspace_id.as_uuid())
        .bind(item.outbox_message_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(db(APPROVAL))?;
        Ok(Inserted {
            value: existing.into_entity()?,
            created: false,
        })
    }

    async fn insert_approvals(
        &self,
        items: &[ApprovalItem],
    ) -> Result<Vec<Inserted<ApprovalItem>>, StoreError> {
        self.insert_approvals_tx(items).await
    }

    async fn get_approval(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
    ) -> Result<ApprovalItem, StoreError> {
        sqlx::query_as::<_, ApprovalRow>(
            "SELECT * FROM approval_items WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(APPROVAL))?
        .ok_or_else(|| StoreError::not_found(APPROVAL, id))?
        .into_entity()
    }

    async fn find_approvals_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_ids: &[OutboxMessageId],
    ) -> Result<Vec<Option<ApprovalItem>>, StoreError> {
        if outbox_message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<_> = outbox_message_ids.iter().map(|id| id.as_uuid()).collect();
        let rows = sqlx::query(APPROVALS_FOR_OUTBOX)
            .bind(workspace_id.as_uuid())
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db(APPROVAL))?;
        aligned::<ApprovalRow>(&rows, outbox_message_ids.len())
    }

    async fn clean_approval_streak(
        &self,
        workspace_id: WorkspaceId,
        template_key: &str,
    ) -> Result<u32, StoreError> {
        let count = sqlx::query_scalar::<_, i64>(CLEAN_STREAK)
            .bind(workspace_id.as_uuid())
            .bind(template_key)
            .fetch_one(&self.pool)
            .await
            .map_err(db(APPROVAL))?;
        u32::try_from(count).map_err(crate::error::backend)
    }

    async fn update_approval(&self, item: &ApprovalItem) -> Result<ApprovalItem, StoreError> {
        item.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(APPROVAL))?;
        let row = bind_approval(
            sqlx::query_as::<_, ChangedApprovalRow>(CHANGE_APPROVAL),
            item,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_refs(APPROVAL, &approval_ref(item)))?;
        match row {
            Some(row) => {
                let (stored, appended) = row.into_change()?;
                insert_events_in(&mut tx, &appended).await?;
                tx.commit().await.map_err(db(APPROVAL))?;
                Ok(stored)
            }
            None => {
                drop(tx);
                let (ws, id) = (item.workspace_id, item.id.as_uuid());
                Err(cas_miss(&self.pool, APPROVAL_VERSION, APPROVAL, ws, id, item.version).await)
            }
        }
    }

    async fn decide_approval(
        &self,
        item: &ApprovalItem,
        message: Option<&OutboxMessage>,
    ) -> Result<ApprovalDecided, StoreError> {
        validate_decision(item, message)?;
        let mut tx = self.pool.begin().await.map_err(db(APPROVAL))?;
        // The message before its item, as advance_enrollment's cancellation does, so
        // the two never wait on each other in opposite orders.
        let (stored_message, message_events) = match message {
            Some(m) => match update_outbox_with_events(&mut tx, m).await? {
                Some((stored, appended)) => (Some(stored), appended),
                None => {
                    tx.rollback().await.map_err(db(APPROVAL))?;
                    return Err(self.decision_miss(item, message).await);
                }
            },
            None => (None, Vec::new()),
        };
        let row = bind_approval(
            sqlx::query_as::<_, ChangedApprovalRow>(CHANGE_APPROVAL),
            item,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_refs(APPROVAL, &approval_ref(item)))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db(APPROVAL))?;
            return Err(self.decision_miss(item, message).await);
        };
        // The decision first, then what it did to the message.
        let (stored_item, mut appended) = row.into_change()?;
        appended.extend(message_events);
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(APPROVAL))?;
        Ok(ApprovalDecided {
            item: stored_item,
            message: stored_message,
        })
    }

    async fn list_approvals(
        &self,
        workspace_id: WorkspaceId,
        status: Option<ApprovalStatus>,
        page: Page<ApprovalItemId>,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        page.validate()?;
        fetch_status_page::<ApprovalRow>(
            &self.pool,
            status_page_sql!("approval_items"),
            workspace_id,
            status.map(|s| s.as_str()),
            page.after.map(|id| id.as_uuid()),
            page.limit,
            APPROVAL,
        )
        .await
    }

    async fn expire_approvals(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db(APPROVAL))?;
        let rows = sqlx::query_as::<_, ApprovalRow>(
            "UPDATE approval_items
             SET status = 'expired', updated_at = $1, version = version + 1
             WHERE status = 'pending' AND expires_at <= $1
               AND ($2::uuid IS NULL OR workspace_id = $2)
             RETURNING *",
        )
        .bind(now)
        .bind(scope_id(scope))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(APPROVAL))?;
        let mut expired = entities(rows)?;
        expired.sort_by_key(|i| i.id);
        let mut appended = Vec::with_capacity(expired.len());
        for item in &expired {
            appended.extend(events::approval_decided(item)?);
        }
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(APPROVAL))?;
        Ok(expired)
    }

    async fn insert_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError> {
        rule.validate()?;
        require_new_version(rule.version)?;
        sqlx::query_as::<_, ApprovalRuleRow>(
            "INSERT INTO approval_rules (workspace_id, id, channel, name, conditions, daily_cap,
                 enabled, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(rule.workspace_id.as_uuid())
        .bind(rule.id.as_uuid())
        .bind(rule.channel.as_str())
        .bind(rule.name.clone())
        .bind(to_json("approval_rule.conditions", &rule.conditions)?)
        .bind(opt_u32(rule.daily_cap))
        .bind(rule.enabled)
        .bind(rule.created_at)
        .bind(rule.updated_at)
        .bind(rule.version)
        .fetch_one(&self.pool)
        .await
        .map_err(db(RULE))?
        .into_entity()
    }

    async fn update_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError> {
        rule.validate()?;
        let row = sqlx::query_as::<_, ApprovalRuleRow>(
            "UPDATE approval_rules
             SET channel = $3, name = $4, conditions = $5, daily_cap = $6, enabled = $7,
                 updated_at = $8, version = version + 1
             WHERE workspace_id = $1 AND id = $2 AND version = $9
             RETURNING *",
        )
        .bind(rule.workspace_id.as_uuid())
        .bind(rule.id.as_uuid())
        .bind(rule.channel.as_str())
        .bind(rule.name.clone())
        .bind(to_json("approval_rule.conditions", &rule.conditions)?)
        .bind(opt_u32(rule.daily_cap))
        .bind(rule.enabled)
        .bind(rule.updated_at)
        .bind(rule.version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(RULE))?;
        match row {
            Some(row) => row.into_entity(),
            None => {
                let (ws, id) = (rule.workspace_id, rule.id.as_uuid());
                Err(cas_miss(&self.pool, RULE_VERSION, RULE, ws, id, rule.version).await)
            }
        }
    }

    async fn list_approval_rules(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
    ) -> Result<Vec<ApprovalRule>, StoreError> {
        let rows = sqlx::query_as::<_, ApprovalRuleRow>(
            "SELECT * FROM approval_rules
             WHERE workspace_id = $1 AND ($2::text IS NULL OR channel = $2)
             ORDER BY id",
        )
        .bind(workspace_id.as_uuid())
        .bind(channel.map(|c| c.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(db(RULE))?;
        entities(rows)
    }

    async fn get_approval_rule(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalRuleId,
    ) -> Result<ApprovalRule, StoreError> {
        sqlx::query_as::<_, ApprovalRuleRow>(
            "SELECT * FROM approval_rules WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(RULE))?
        .ok_or_else(|| StoreError::not_found(RULE, id))?
        .into_entity()
    }
}
