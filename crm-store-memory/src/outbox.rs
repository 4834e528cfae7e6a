//! The outbox: enqueue, claim under a fenced lease, and the single send path.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::NewEvent;
use crm_core::model::rules::require_new_version;
use crm_core::model::{
    ApprovalItem, ApprovalStatus, Enrollment, Lease, OutboxMessage, OutboxStatus,
};
use crm_core::store::takeover_cutoff;
use crm_core::store::{
    ApprovalHold, Claim, Inserted, OutboxStore, Page, QuotaKey, Reschedule, Scope, SendStart,
    SendStartOutcome, SentMark, SentRecord,
};

use crm_core::{StoreError, ValidationError, events};

use crate::approval::{ApprovalTables, insert_item};
use crate::crm::record_activity;
use crate::queue::append_changes;
use crate::send_gate::{self, GateTables};
use crate::sent::{mark_sent, mark_sent_many};
use crate::sequences::nudge_enrollment;
use crate::table::{Fenced, Table, Unique, deadline, limit};
use crate::{MemoryStore, Tables};

/// The outbox and approval tables.
#[derive(Default)]
pub(crate) struct OutboxTables {
    pub(crate) messages: Table<Fenced<OutboxMessage>>,
    /// Idempotency key -> message.
    keys: Unique<String, OutboxMessageId>,
    /// Pending messages by (not_before, id): the claim order.
    due: BTreeSet<(DateTime<Utc>, OutboxMessageId, WorkspaceId)>,
    pub(crate) approvals: ApprovalTables,
    /// Send starts and quota grants (see [`crate::send_gate`]).
    pub(crate) gate: GateTables,
    /// The earliest `not_before` of the messages this call made pending:
    /// `MemoryStore::with` wakes the dispatchers.
    pub(crate) wake: Option<DateTime<Utc>>,
}

impl OutboxTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.push(("outbox", self.messages.len()));
        self.approvals.sizes(out);
    }

    /// Stores a message, keeping the key index and the claim queue in step. Uniqueness
    /// must have been checked.
    pub(crate) fn put(&mut self, row: Fenced<OutboxMessage>) -> OutboxMessage {
        let (ws, id) = (row.row.workspace_id, row.row.id);
        let mut key_changed = true;
        let mut old_key = None;
        if let Some(old) = self.messages.get(ws, id) {
            if old.row.status == OutboxStatus::Pending {
                self.due.remove(&(old.row.not_before, id, ws));
            }
            // Most writes (claims, sends) keep the key: skip re-indexing it.
            key_changed = old.row.idempotency_key != row.row.idempotency_key;
            if key_changed {
                old_key = Some(old.row.idempotency_key.clone());
            }
        }
        if row.row.status == OutboxStatus::Pending {
            self.due.insert((row.row.not_before, id, ws));
            self.wake = Some(
                self.wake
                    .map_or(row.row.not_before, |d| d.min(row.row.not_before)),
            );
        }
        if key_changed {
            self.keys
                .replace(ws, old_key, Some(row.row.idempotency_key.clone()), id);
        }
        self.gate.track(&row.row);
        self.messages.put(row).row.clone()
    }

    /// The message if it is `InFlight` under `token`: `NotFound` if it does not exist
    /// in `ws` (as every write on a missing row, and as an `UPDATE ... RETURNING` that
    /// matched nothing followed by a lookup would say), `LeaseLost` otherwise.
    pub(crate) fn leased(
        &self,
        ws: WorkspaceId,
        id: OutboxMessageId,
        token: i64,
    ) -> Result<Fenced<OutboxMessage>, StoreError> {
        let stored = self.messages.find(ws, id)?;
        let held = stored.row.status == OutboxStatus::InFlight
            && stored.row.lease.as_ref().is_some_and(|l| l.token == token);
        if held {
            Ok(stored.clone())
        } else {
            Err(StoreError::lease_lost(OutboxMessageId::ENTITY, id))
        }
    }
}

/// An enqueue that passed every check.
pub(crate) enum Enqueue {
    /// A message with the key exists and is returned unchanged.
    Existing(OutboxMessage),
    /// A new row to store.
    New(Fenced<OutboxMessage>),
}

/// Checks an enqueue (see [`OutboxStore::enqueue_outbox`]) without writing anything.
pub(crate) fn check_enqueue(t: &Tables, message: &OutboxMessage) -> Result<Enqueue, StoreError> {
    message.validate()?;
    require_new_version(message.version)?;
    let ws = message.workspace_id;
    let o = &t.outbox;
    // `ON CONFLICT (workspace, idempotency_key) DO NOTHING`: the key wins over every
    // other check, as PostgreSQL inserts nothing and so checks no foreign key.
    if let Some(existing) = o
        .keys
        .get(ws, message.idempotency_key.as_str())
        .and_then(|id| o.messages.get(ws, id))
    {
        return Ok(Enqueue::Existing(existing.row.clone()));
    }
    // A caller-supplied lease is stored as given, like any column; its token seeds the fence.
    let row = Fenced {
        fence: message.lease.as_ref().map_or(0, |l| l.token),
        row: message.clone(),
    };
    o.messages.ensure_vacant(&row)?;
    t.crm.contacts.ensure_ref(ws, message.contact_id)?;
    Ok(Enqueue::New(row))
}

/// Stores a checked enqueue.
pub(crate) fn apply_enqueue(t: &mut Tables, plan: Enqueue) -> Inserted<OutboxMessage> {
    match plan {
        Enqueue::Existing(value) => Inserted {
            value,
            created: false,
        },
        Enqueue::New(row) => Inserted {
            value: t.outbox.put(row),
            created: true,
        },
    }
}

fn enqueue(t: &mut Tables, message: &OutboxMessage) -> Result<Inserted<OutboxMessage>, StoreError> {
    let plan = check_enqueue(t, message)?;
    Ok(apply_enqueue(t, plan))
}

/// Cancels every `Pending` or `AwaitingApproval` message of `enrollment` with `reason`
/// and withdraws their pending approval items, each with its event; returns the
/// cancelled ids, ascending.
pub(crate) fn cancel_queued(
    t: &mut Tables,
    enrollment: &Enrollment,
    reason: &str,
    now: DateTime<Utc>,
) -> Vec<OutboxMessageId> {
    let ws = enrollment.workspace_id;
    let o = &mut t.outbox;
    let queued: Vec<Fenced<OutboxMessage>> = o
        .messages
        .rows(ws)
        .filter(|m| {
            m.row.enrollment_id == Some(enrollment.id)
                && matches!(
                    m.row.status,
                    OutboxStatus::Pending | OutboxStatus::AwaitingApproval
                )
        })
        .cloned()
        .collect();
    let mut cancelled = Vec::with_capacity(queued.len());
    let mut changes = Vec::new();
    for mut row in queued {
        let m = &mut row.row;
        m.status = OutboxStatus::Cancelled;
        m.last_error = Some(reason.to_owned());
        m.updated_at = now;
        m.version += 1;
        let stored = o.put(row);
        // Built from stored rows with valid ids and kinds: these cannot fail, and
        // this path has already written, so a failure is not an answer it can give.
        changes.extend(events::outbox_finished(&stored, Some(reason)).unwrap_or_default());
        cancelled.push(stored.id);
    }
    for item in o.approvals.withdraw_pending(ws, &cancelled, reason, now) {
        changes.extend(events::approval_decided(&item).ok().flatten());
    }
    append_changes(t, &changes);
    cancelled
}

fn claim(t: &mut Tables, claim: &Claim) -> Result<Vec<OutboxMessage>, StoreError> {
    claim.validate()?;
    let o = &mut t.outbox;
    let picked: Vec<(OutboxMessageId, WorkspaceId)> = o
        .due
        .iter()
        .take_while(|(not_before, _, _)| *not_before <= claim.now)
        .filter(|(_, _, ws)| claim.scope.covers(*ws))
        .take(limit(claim.limit))
        .map(|(_, id, ws)| (*id, *ws))
        .collect();
    let expires_at = deadline(claim.now, claim.lease_ttl)?;
    let mut claimed = Vec::with_capacity(picked.len());
    for (id, ws) in picked {
        let Some(stored) = o.messages.get(ws, id) else {
            continue;
        };
        let mut row = stored.clone();
        row.fence = row.fence.saturating_add(1);
        let m = &mut row.row;
        m.status = OutboxStatus::InFlight;
        m.lease = Some(Lease {
            owner: claim.worker.clone(),
            token: row.fence,
            expires_at,
        });
        m.attempts = m.attempts.saturating_add(1);
        m.updated_at = claim.now;
        m.version += 1;
        claimed.push(o.put(row));
    }
    Ok(claimed)
}

fn reschedule(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    token: i64,
    reschedule: &Reschedule,
) -> Result<OutboxMessage, StoreError> {
    let mut row = t.outbox.leased(ws, id, token)?;
    let m = &mut row.row;
    m.status = OutboxStatus::Pending;
    m.not_before = reschedule.not_before;
    m.lease = None;
    m.last_error.clone_from(&reschedule.reason);
    if !reschedule.count_attempt {
        m.attempts = m.attempts.saturating_sub(1).max(0);
    }
    // No "now" is given, so `updated_at` is left as the claim set it.
    m.version += 1;
    Ok(t.outbox.put(row))
}

fn finish(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    token: i64,
    status: OutboxStatus,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<OutboxMessage, StoreError> {
    if !matches!(
        status,
        OutboxStatus::Failed | OutboxStatus::DeadLettered | OutboxStatus::Cancelled
    ) {
        return Err(
            ValidationError::new("status", "must be failed, dead_lettered or cancelled").into(),
        );
    }
    let mut row = t.outbox.leased(ws, id, token)?;
    let m = &mut row.row;
    m.status = status;
    m.lease = None;
    m.last_error = Some(reason.to_owned());
    m.updated_at = now;
    m.version += 1;
    let finished = events::outbox_finished(m, Some(reason))?;
    let failure = events::send_failed_activity(m, reason, now)?;
    if let Some(activity) = &failure {
        t.crm.check_activity(activity)?;
    }
    // Every check passed: from here on nothing fails.
    let stored = t.outbox.put(row);
    append_changes(t, &finished);
    if let Some(activity) = failure {
        record_activity(t, &activity)?;
    }
    if let Some(enrollment) = stored.enrollment_id {
        nudge_enrollment(t, ws, enrollment, stored.step_index, now);
    }
    Ok(stored)
}

fn reap(t: &mut Tables, scope: Scope, now: DateTime<Utc>) -> u64 {
    let o = &mut t.outbox;
    let cutoff = takeover_cutoff(now);
    let expired: Vec<Fenced<OutboxMessage>> = o
        .messages
        .in_scope(scope)
        .filter(|m| {
            m.row.status == OutboxStatus::InFlight
                && m.row.lease.as_ref().is_some_and(|l| l.expires_at <= cutoff)
        })
        .cloned()
        .collect();
    let mut reaped = 0;
    for mut row in expired {
        let m = &mut row.row;
        m.status = OutboxStatus::Pending;
        m.lease = None;
        m.updated_at = now;
        m.version += 1;
        o.put(row);
        reaped += 1;
    }
    reaped
}

/// An outbox update that passed every check, with the events of its change.
pub(crate) struct OutboxUpdate {
    row: Fenced<OutboxMessage>,
    /// `outbox.cancelled` when the update cancels the message.
    events: Vec<NewEvent>,
}

/// Checks an update (see [`OutboxStore::update_outbox`]) and returns the row to store,
/// without writing anything.
pub(crate) fn check_update(
    t: &Tables,
    message: &OutboxMessage,
) -> Result<OutboxUpdate, StoreError> {
    message.validate_update()?;
    let ws = message.workspace_id;
    let o = &t.outbox;
    let stored = o.messages.find(ws, message.id)?;
    // The state rule is checked before the version: an in-flight or final message can
    // never be changed, whatever version the caller read.
    if stored.row.status == OutboxStatus::InFlight || stored.row.status.is_final() {
        return Err(StoreError::conflict(
            OutboxMessageId::ENTITY,
            format!(
                "message {} is {} and cannot be changed",
                message.id, stored.row.status
            ),
        ));
    }
    let (row, _) = o.messages.cas(&Fenced {
        row: message.clone(),
        fence: 0,
    })?;
    o.keys.check(
        ws,
        Some(&row.row.idempotency_key),
        row.row.id,
        "idempotency_key",
    )?;
    t.crm.contacts.ensure_ref(ws, row.row.contact_id)?;
    // The stored row is never final (checked above), so a final status here is the
    // change into it. The caller's free-text reason stays on the row, not in the event.
    let events = events::outbox_finished(&row.row, None)?;
    Ok(OutboxUpdate { row, events })
}

/// Stores an update that passed [`check_update`] with its events; a cancelled step
/// message makes its waiting enrollment due at the message's `updated_at`.
pub(crate) fn apply_update(t: &mut Tables, update: OutboxUpdate) -> OutboxMessage {
    let stored = t.outbox.put(update.row);
    append_changes(t, &update.events);
    if let (OutboxStatus::Cancelled, Some(enrollment)) = (stored.status, stored.enrollment_id) {
        nudge_enrollment(
            t,
            stored.workspace_id,
            enrollment,
            stored.step_index,
            stored.updated_at,
        );
    }
    stored
}

fn update(t: &mut Tables, message: &OutboxMessage) -> Result<OutboxMessage, StoreError> {
    let row = check_update(t, message)?;
    Ok(apply_update(t, row))
}

fn hold_for_approval(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    token: i64,
    item: &ApprovalItem,
    now: DateTime<Utc>,
) -> Result<ApprovalHold, StoreError> {
    let mut row = t.outbox.leased(ws, id, token)?;
    if item.workspace_id != ws || item.outbox_message_id != id {
        return Err(ValidationError::new(
            "outbox_message_id",
            "the item must be for the held message of this workspace",
        )
        .into());
    }
    // All of insert_item's checks run before it writes, and nothing below can fail:
    // the item and the parked message are stored together or not at all.
    let item = insert_item(t, item)?;
    if item.value.status != ApprovalStatus::Pending {
        // Already decided: the caller acts on the decision under its lease.
        return Ok(ApprovalHold {
            message: row.row,
            item,
        });
    }
    let m = &mut row.row;
    m.status = OutboxStatus::AwaitingApproval;
    // The lease ends (the token stays in `fence`); nothing was sent, so the claim's
    // attempt is given back.
    m.lease = None;
    m.attempts = m.attempts.saturating_sub(1).max(0);
    m.updated_at = now;
    m.version += 1;
    Ok(ApprovalHold {
        message: t.outbox.put(row),
        item,
    })
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn enqueue_outbox(
        &self,
        message: &OutboxMessage,
    ) -> Result<Inserted<OutboxMessage>, StoreError> {
        self.with(|t| enqueue(t, message))
    }

    async fn get_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
    ) -> Result<OutboxMessage, StoreError> {
        self.with(|t| Ok(t.outbox.messages.find(workspace_id, id)?.row.clone()))
    }

    async fn find_outbox_by_provider_id(
        &self,
        workspace_id: WorkspaceId,
        provider_message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        self.with(|t| {
            Ok(t.outbox
                .messages
                .rows(workspace_id)
                .find(|m| m.row.provider_message_id.as_deref() == Some(provider_message_id))
                .map(|m| m.row.clone()))
        })
    }

    async fn list_outbox(
        &self,
        workspace_id: WorkspaceId,
        status: Option<OutboxStatus>,
        page: Page<OutboxMessageId>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.with(|t| {
            let rows = t.outbox.messages.page(workspace_id, &page, |m| {
                status.is_none_or(|s| m.row.status == s)
            })?;
            Ok(rows.into_iter().map(|m| m.row.clone()).collect())
        })
    }

    async fn claim_outbox(&self, claim_req: &Claim) -> Result<Vec<OutboxMessage>, StoreError> {
        self.with(|t| claim(t, claim_req))
    }

    async fn begin_sends(
        &self,
        starts: &[SendStart],
        now: DateTime<Utc>,
    ) -> Result<Vec<SendStartOutcome>, StoreError> {
        Ok(self.with(|t| send_gate::begin_sends(t, starts, now)))
    }

    async fn release_send_quota(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        key: &QuotaKey,
    ) -> Result<bool, StoreError> {
        self.with(|t| send_gate::release_send_quota(t, workspace_id, id, key))
    }

    async fn mark_outbox_sent(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        sent: &SentRecord,
    ) -> Result<OutboxMessage, StoreError> {
        self.with(|t| mark_sent(t, workspace_id, id, lease_token, sent))
    }

    async fn mark_outbox_sent_many(
        &self,
        marks: &[SentMark],
    ) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError> {
        self.with(|t| mark_sent_many(t, marks))
    }

    async fn reschedule_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        schedule: &Reschedule,
    ) -> Result<OutboxMessage, StoreError> {
        self.with(|t| reschedule(t, workspace_id, id, lease_token, schedule))
    }

    async fn hold_outbox_for_approval(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<ApprovalHold, StoreError> {
        self.with(|t| hold_for_approval(t, workspace_id, id, lease_token, item, now))
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
        self.with(|t| finish(t, workspace_id, id, lease_token, status, reason, now))
    }

    async fn reap_outbox_leases(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(self.with(|t| reap(t, scope, now)))
    }

    async fn update_outbox(&self, message: &OutboxMessage) -> Result<OutboxMessage, StoreError> {
        self.with(|t| update(t, message))
    }
}
