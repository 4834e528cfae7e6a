//! `insert_approvals`: a batch of approval items (the audit trail of a batch of
//! auto-approvals) with their `approval.requested` events, in one transaction of two
//! statements and the event append.

use std::collections::{HashMap, HashSet};

use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::ApprovalItem;
use crm_core::model::rules::require_new_version;
use crm_core::store::Inserted;
use sqlx::types::Json;
use uuid::Uuid;

use super::OUTBOX;
use crate::PostgresStore;
use crate::error::{Ref, db, db_refs};
use crate::queue::insert_events_in;
use crate::rows::{ApprovalRow, IntoEntity};

const APPROVAL: &str = "approval_item";

/// Inserts every item whose message has none yet; answers the inserted rows.
const INSERT_MANY: &str = "
    INSERT INTO approval_items (workspace_id, id, outbox_message_id, channel, status,
        confidence, template_key, step_index, original_body, edited_body, context, reason,
        decided_by, decided_by_rule, decided_at, expires_at, created_at, updated_at, version)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
        $6::float8[], $7::text[], $8::int4[], $9::text[], $10::text[], $11::jsonb[],
        $12::text[], $13::uuid[], $14::uuid[], $15::timestamptz[], $16::timestamptz[],
        $17::timestamptz[], $18::timestamptz[], $19::int8[])
    ON CONFLICT (workspace_id, outbox_message_id) DO NOTHING
    RETURNING *";

/// The items of (workspace, message) pairs.
const EXISTING: &str = "
    SELECT a.* FROM approval_items a
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(ws, outbox_message_id)
      ON a.workspace_id = k.ws AND a.outbox_message_id = k.outbox_message_id";

impl PostgresStore {
    /// `ApprovalStore::insert_approvals`.
    pub(super) async fn insert_approvals_tx(
        &self,
        items: &[ApprovalItem],
    ) -> Result<Vec<Inserted<ApprovalItem>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // The first item given for a message is the one inserted.
        let mut firsts: Vec<&ApprovalItem> = Vec::with_capacity(items.len());
        let mut seen: HashSet<(WorkspaceId, OutboxMessageId)> = HashSet::new();
        for item in items {
            item.validate()?;
            require_new_version(item.version)?;
            if seen.insert((item.workspace_id, item.outbox_message_id)) {
                firsts.push(item);
            }
        }
        let col = |f: fn(&ApprovalItem) -> Uuid| firsts.iter().map(|i| f(i)).collect::<Vec<_>>();
        let refs = [Ref::new("approval_items_outbox_fk", OUTBOX, None)];
        let mut tx = self.pool.begin().await.map_err(db(APPROVAL))?;
        let inserted: Vec<ApprovalRow> = sqlx::query_as(INSERT_MANY)
            .bind(col(|i| i.workspace_id.as_uuid()))
            .bind(col(|i| i.id.as_uuid()))
            .bind(col(|i| i.outbox_message_id.as_uuid()))
            .bind(
                firsts
                    .iter()
                    .map(|i| i.channel.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(firsts.iter().map(|i| i.status.as_str()).collect::<Vec<_>>())
            .bind(firsts.iter().map(|i| i.confidence).collect::<Vec<_>>())
            .bind(
                firsts
                    .iter()
                    .map(|i| i.template_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(firsts.iter().map(|i| i.step_index).collect::<Vec<_>>())
            .bind(
                firsts
                    .iter()
                    .map(|i| i.original_body.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                firsts
                    .iter()
                    .map(|i| i.edited_body.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(firsts.iter().map(|i| Json(&i.context)).collect::<Vec<_>>())
            .bind(
                firsts
                    .iter()
                    .map(|i| i.reason.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                firsts
                    .iter()
                    .map(|i| i.decided_by.map(|id| id.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                firsts
                    .iter()
                    .map(|i| i.decided_by_rule.map(|id| id.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(firsts.iter().map(|i| i.decided_at).collect::<Vec<_>>())
            .bind(firsts.iter().map(|i| i.expires_at).collect::<Vec<_>>())
            .bind(firsts.iter().map(|i| i.created_at).collect::<Vec<_>>())
            .bind(firsts.iter().map(|i| i.updated_at).collect::<Vec<_>>())
            .bind(firsts.iter().map(|i| i.version).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_refs(APPROVAL, &refs))?;
        let mut stored: HashMap<(WorkspaceId, OutboxMessageId), (ApprovalItem, bool)> =
            HashMap::with_capacity(items.len());
        let mut appended = Vec::with_capacity(inserted.len());
        for row in inserted {
            let item = row.into_entity()?;
            appended.push(events::approval_requested(&item)?);
            stored.insert((item.workspace_id, item.outbox_message_id), (item, true));
        }
        let missing: Vec<&ApprovalItem> = firsts
            .iter()
            .copied()
            .filter(|i| !stored.contains_key(&(i.workspace_id, i.outbox_message_id)))
            .collect();
        if !missing.is_empty() {
            // Items are never deleted: the one holding each message is still there.
            let existing: Vec<ApprovalRow> = sqlx::query_as(EXISTING)
                .bind(
                    missing
                        .iter()
                        .map(|i| i.workspace_id.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    missing
                        .iter()
                        .map(|i| i.outbox_message_id.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(db(APPROVAL))?;
            for row in existing {
                let item = row.into_entity()?;
                stored.insert((item.workspace_id, item.outbox_message_id), (item, false));
            }
        }
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(APPROVAL))?;
        let mut answered: HashMap<(WorkspaceId, OutboxMessageId), bool> = HashMap::new();
        items
            .iter()
            .map(|i| {
                let key = (i.workspace_id, i.outbox_message_id);
                let (value, created) = stored
                    .get(&key)
                    .ok_or_else(|| StoreError::not_found(APPROVAL, i.outbox_message_id))?;
                // Only the first item given for a message can have created it.
                let first = answered.insert(key, true).is_none();
                Ok(Inserted {
                    value: value.clone(),
                    created: *created && first,
                })
            })
            .collect()
    }
}
