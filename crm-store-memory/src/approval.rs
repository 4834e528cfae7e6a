//! The approval inbox and graduated rules (the second half of `crm_core::store::outbox`).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{
    ApprovalItem, ApprovalRule, ApprovalStatus, Channel, NewEvent, OutboxMessage,
};
use crm_core::store::{ApprovalDecided, ApprovalStore, Inserted, Page, Scope};
use crm_core::{StoreError, ValidationError};

use crate::outbox::{apply_update, check_update};
use crate::queue::append_changes;
use crm_core::events;

use crate::table::{Table, Unique, cloned};
use crate::{MemoryStore, Tables};

/// The approval tables.
#[derive(Default)]
pub(crate) struct ApprovalTables {
    items: Table<ApprovalItem>,
    /// Outbox message -> its one inbox item.
    by_message: Unique<OutboxMessageId, ApprovalItemId>,
    rules: Table<ApprovalRule>,
}

impl ApprovalTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("approvals", self.items.len()),
            ("approval_rules", self.rules.len()),
        ]);
    }

    /// Stores an item, keeping the one-item-per-message index. Uniqueness must have
    /// been checked.
    fn put(&mut self, row: ApprovalItem) -> ApprovalItem {
        let (ws, id) = (row.workspace_id, row.id);
        let old = self.items.get(ws, id).map(|o| o.outbox_message_id);
        self.by_message
            .replace(ws, old, Some(row.outbox_message_id), id);
        self.items.put(row).clone()
    }

    /// Withdraws the `Pending` items of `messages` with `reason` at `now` (part
    /// of cancelling an enrollment's queued messages); returns them, for their events.
    pub(crate) fn withdraw_pending(
        &mut self,
        ws: WorkspaceId,
        messages: &[OutboxMessageId],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Vec<ApprovalItem> {
        let pending: Vec<ApprovalItem> = messages
            .iter()
            .filter_map(|m| self.by_message.get(ws, m))
            .filter_map(|id| self.items.get(ws, id))
            .filter(|i| i.status == ApprovalStatus::Pending)
            .cloned()
            .collect();
        pending
            .into_iter()
            .map(|mut item| {
                item.status = ApprovalStatus::Withdrawn;
                item.reason = Some(reason.to_owned());
                item.decided_at = Some(now);
                item.updated_at = now;
                item.version += 1;
                self.put(item)
            })
            .collect()
    }

    /// The item of `message`, if any.
    fn for_message(&self, ws: WorkspaceId, message: OutboxMessageId) -> Option<&ApprovalItem> {
        self.by_message
            .get(ws, &message)
            .and_then(|id| self.items.get(ws, id))
    }

    /// See [`ApprovalStore::clean_approval_streak`].
    fn clean_streak(&self, ws: WorkspaceId, template_key: &str) -> u32 {
        let mut decided: Vec<&ApprovalItem> = self
            .items
            .rows(ws)
            .filter(|i| i.template_key.as_deref() == Some(template_key))
            .filter(|i| {
                matches!(
                    i.status,
                    ApprovalStatus::Approved | ApprovalStatus::Rejected
                )
            })
            .collect();
        // Newest decision first; an undecided time sorts last, as `NULLS LAST` would.
        decided.sort_unstable_by_key(|i| Reverse((i.decided_at, i.id)));
        let clean = decided
            .iter()
            .take_while(|i| i.status == ApprovalStatus::Approved && i.edited_body.is_none())
            .count();
        u32::try_from(clean).unwrap_or(u32::MAX)
    }
}

/// What inserting one item will do, decided without writing.
enum ItemPlan {
    /// The message's existing item is the answer.
    Existing(ApprovalItem),
    /// A new item to store, with its `approval.requested`.
    New(NewEvent),
}

/// Checks an insert (see [`ApprovalStore::insert_approval`]) without writing.
fn check_item(t: &Tables, item: &ApprovalItem) -> Result<ItemPlan, StoreError> {
    item.validate()?;
    require_new_version(item.version)?;
    let ws = item.workspace_id;
    let a = &t.outbox.approvals;
    // `ON CONFLICT (workspace, outbox_message_id) DO NOTHING`: the existing item wins.
    if let Some(existing) = a.for_message(ws, item.outbox_message_id) {
        return Ok(ItemPlan::Existing(existing.clone()));
    }
    a.items.ensure_vacant(item)?;
    t.outbox
        .messages
        .ensure_ref(ws, Some(item.outbox_message_id))?;
    Ok(ItemPlan::New(events::approval_requested(item)?))
}

/// Stores a checked insert.
fn apply_item(t: &mut Tables, item: &ApprovalItem, plan: ItemPlan) -> Inserted<ApprovalItem> {
    match plan {
        ItemPlan::Existing(value) => Inserted {
            value,
            created: false,
        },
        ItemPlan::New(event) => {
            let value = t.outbox.approvals.put(item.clone());
            append_changes(t, &[event]);
            Inserted {
                value,
                created: true,
            }
        }
    }
}

pub(crate) fn insert_item(
    t: &mut Tables,
    item: &ApprovalItem,
) -> Result<Inserted<ApprovalItem>, StoreError> {
    let plan = check_item(t, item)?;
    Ok(apply_item(t, item, plan))
}

/// `insert_approvals`: every item checked first (a refusal stores nothing), then
/// stored in order; a later item for a message given earlier gets the earlier one.
fn insert_items(
    t: &mut Tables,
    items: &[ApprovalItem],
) -> Result<Vec<Inserted<ApprovalItem>>, StoreError> {
    let mut first: HashMap<(WorkspaceId, OutboxMessageId), usize> = HashMap::new();
    let mut ids = HashSet::with_capacity(items.len());
    let mut plans = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let message = (item.workspace_id, item.outbox_message_id);
        if first.contains_key(&message) {
            item.validate()?;
            plans.push(None);
            continue;
        }
        first.insert(message, i);
        if !ids.insert((item.workspace_id, item.id)) {
            return Err(StoreError::conflict(
                ApprovalItemId::ENTITY,
                format!("id {} is already used", item.id),
            ));
        }
        plans.push(Some(check_item(t, item)?));
    }
    let mut out: Vec<Inserted<ApprovalItem>> = Vec::with_capacity(items.len());
    for (item, plan) in items.iter().zip(plans) {
        let inserted = match plan {
            Some(plan) => apply_item(t, item, plan),
            None => {
                let earlier = first
                    .get(&(item.workspace_id, item.outbox_message_id))
                    .and_then(|&i| out.get(i))
                    .map(|e| e.value.clone());
                match earlier {
                    Some(value) => Inserted {
                        value,
                        created: false,
                    },
                    // Unreachable: a repeat always follows its first.
                    None => return Err(StoreError::conflict(ApprovalItemId::ENTITY, "repeat")),
                }
            }
        };
        out.push(inserted);
    }
    Ok(out)
}

/// Checks an update of `item` (see [`ApprovalStore::update_approval`]) and returns the
/// row to store with its event (when it leaves `Pending`), without writing anything.
fn check_update_item(
    t: &Tables,
    item: &ApprovalItem,
) -> Result<(ApprovalItem, Option<NewEvent>), StoreError> {
    item.validate()?;
    let ws = item.workspace_id;
    let messages = &t.outbox.messages;
    let a = &t.outbox.approvals;
    let (row, old) = a.items.cas(item)?;
    a.by_message.check(
        ws,
        Some(&row.outbox_message_id),
        row.id,
        "outbox_message_id",
    )?;
    messages.ensure_ref(ws, Some(row.outbox_message_id))?;
    let event = if old.status == ApprovalStatus::Pending {
        events::approval_decided(&row)?
    } else {
        None
    };
    Ok((row, event))
}

/// Stores a checked item update with its event.
fn put_item(t: &mut Tables, row: ApprovalItem, event: Option<NewEvent>) -> ApprovalItem {
    let stored = t.outbox.approvals.put(row);
    append_changes(t, event.as_slice());
    stored
}

fn update_item(t: &mut Tables, item: &ApprovalItem) -> Result<ApprovalItem, StoreError> {
    let (row, event) = check_update_item(t, item)?;
    Ok(put_item(t, row, event))
}

/// Records a decision and its message together: every check first, then both writes.
fn decide(
    t: &mut Tables,
    item: &ApprovalItem,
    message: Option<&OutboxMessage>,
) -> Result<ApprovalDecided, StoreError> {
    if !matches!(
        item.status,
        ApprovalStatus::Approved | ApprovalStatus::Rejected | ApprovalStatus::Expired
    ) {
        return Err(ValidationError::new(
            "approval.status",
            "a decision must be approved, rejected or expired",
        )
        .into());
    }
    if let Some(m) = message
        && (m.workspace_id != item.workspace_id || m.id != item.outbox_message_id)
    {
        return Err(
            ValidationError::new("message", "must be the item's own outbox message").into(),
        );
    }
    let (row, event) = check_update_item(t, item)?;
    let message_row = message.map(|m| check_update(t, m)).transpose()?;
    // Every check passed: from here on nothing fails.
    let item = put_item(t, row, event);
    let message = message_row.map(|m| apply_update(t, m));
    Ok(ApprovalDecided { item, message })
}

fn expire(t: &mut Tables, scope: Scope, now: DateTime<Utc>) -> Vec<ApprovalItem> {
    let a = &mut t.outbox.approvals;
    let mut due: Vec<ApprovalItem> = a
        .items
        .in_scope(scope)
        .filter(|i| i.status == ApprovalStatus::Pending && i.expires_at <= now)
        .cloned()
        .collect();
    // Returned ascending by id, as `ORDER BY id` would over all workspaces.
    due.sort_unstable_by_key(|i| i.id);
    let expired: Vec<ApprovalItem> = due
        .into_iter()
        .map(|mut item| {
            item.status = ApprovalStatus::Expired;
            item.updated_at = now;
            item.version += 1;
            a.put(item)
        })
        .collect();
    // Built from stored rows: cannot fail, and the items are written already.
    let changes: Vec<NewEvent> = expired
        .iter()
        .filter_map(|item| events::approval_decided(item).ok().flatten())
        .collect();
    append_changes(t, &changes);
    expired
}

fn update_rule(t: &mut Tables, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError> {
    rule.validate()?;
    let rules = &mut t.outbox.approvals.rules;
    let (row, _) = rules.cas(rule)?;
    Ok(rules.put(row).clone())
}

#[async_trait]
impl ApprovalStore for MemoryStore {
    async fn insert_approval(
        &self,
        item: &ApprovalItem,
    ) -> Result<Inserted<ApprovalItem>, StoreError> {
        self.with(|t| insert_item(t, item))
    }

    async fn insert_approvals(
        &self,
        items: &[ApprovalItem],
    ) -> Result<Vec<Inserted<ApprovalItem>>, StoreError> {
        self.with(|t| insert_items(t, items))
    }

    async fn get_approval(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
    ) -> Result<ApprovalItem, StoreError> {
        self.with(|t| t.outbox.approvals.items.find(workspace_id, id).cloned())
    }

    async fn find_approvals_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_ids: &[OutboxMessageId],
    ) -> Result<Vec<Option<ApprovalItem>>, StoreError> {
        self.with(|t| {
            let approvals = &t.outbox.approvals;
            Ok(outbox_message_ids
                .iter()
                .map(|&id| approvals.for_message(workspace_id, id).cloned())
                .collect())
        })
    }

    async fn clean_approval_streak(
        &self,
        workspace_id: WorkspaceId,
        template_key: &str,
    ) -> Result<u32, StoreError> {
        Ok(self.with(|t| t.outbox.approvals.clean_streak(workspace_id, template_key)))
    }

    async fn update_approval(&self, item: &ApprovalItem) -> Result<ApprovalItem, StoreError> {
        self.with(|t| update_item(t, item))
    }

    async fn decide_approval(
        &self,
        item: &ApprovalItem,
        message: Option<&OutboxMessage>,
    ) -> Result<ApprovalDecided, StoreError> {
        self.with(|t| decide(t, item, message))
    }

    async fn list_approvals(
        &self,
        workspace_id: WorkspaceId,
        status: Option<ApprovalStatus>,
        page: Page<ApprovalItemId>,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        self.with(|t| {
            cloned(t.outbox.approvals.items.page(workspace_id, &page, |i| {
                status.is_none_or(|s| i.status == s)
            }))
        })
    }

    async fn expire_approvals(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        Ok(self.with(|t| expire(t, scope, now)))
    }

    async fn insert_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError> {
        rule.validate()?;
        require_new_version(rule.version)?;
        self.with(|t| {
            let rules = &mut t.outbox.approvals.rules;
            rules.ensure_vacant(rule)?;
            Ok(rules.put(rule.clone()).clone())
        })
    }

    async fn update_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError> {
        self.with(|t| update_rule(t, rule))
    }

    async fn list_approval_rules(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
    ) -> Result<Vec<ApprovalRule>, StoreError> {
        self.with(|t| {
            Ok(t.outbox
                .approvals
                .rules
                .rows(workspace_id)
                .filter(|r| channel.is_none_or(|c| r.channel == c))
                .cloned()
                .collect())
        })
    }

    async fn get_approval_rule(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalRuleId,
    ) -> Result<ApprovalRule, StoreError> {
        self.with(|t| t.outbox.approvals.rules.find(workspace_id, id).cloned())
    }
}
