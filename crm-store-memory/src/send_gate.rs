//! The send gate: `begin_sends`, quota grants keyed by message, and the cancellation
//! of unsent messages an unsubscribe stops. Everything runs under the store's one
//! lock, so each call is atomic and the order of calls is the order of the lock.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::{
    Channel, ConsentStatus, OutboxMessage, OutboxStatus, Suppression, normalize_address,
};
use crm_core::store::{QuotaKey, SendStart, SendStartOutcome, StoppedSends};
use crm_core::{StoreError, events};

use crate::Tables;
use crate::compliance::{blocking_suppression, current_consent};
use crate::queue::append_changes;
use crate::sequences::nudge_enrollment;
use crate::table::Fenced;

/// What the gate keeps beside the messages.
#[derive(Default)]
pub(crate) struct GateTables {
    /// The send start of each message marked sending (while `InFlight`) or sent, with
    /// the message's contact.
    started: HashMap<(WorkspaceId, OutboxMessageId), (Option<ContactId>, DateTime<Utc>)>,
    /// The started messages of each contact, so counting a contact's touches reads
    /// only its own messages.
    by_contact: HashMap<(WorkspaceId, ContactId), HashSet<OutboxMessageId>>,
    /// Quota units held, by message: the counters (key) it holds one unit of.
    grants: HashMap<(WorkspaceId, OutboxMessageId), HashSet<QuotaKey>>,
}

impl GateTables {
    /// Keeps the send start in step with a stored message: it lasts while the message
    /// is `InFlight` (marked sending) or once it is `Sent` (from `sent_at` when it was
    /// never marked).
    pub(crate) fn track(&mut self, m: &OutboxMessage) {
        match m.status {
            OutboxStatus::InFlight => {}
            OutboxStatus::Sent => {
                if let Some(at) = m.sent_at
                    && !self.started.contains_key(&(m.workspace_id, m.id))
                {
                    self.start(m, at);
                }
            }
            _ => self.forget(m.workspace_id, m.id),
        }
    }

    /// Marks `m` started at `at`.
    fn start(&mut self, m: &OutboxMessage, at: DateTime<Utc>) {
        self.started
            .insert((m.workspace_id, m.id), (m.contact_id, at));
        if let Some(contact) = m.contact_id {
            self.by_contact
                .entry((m.workspace_id, contact))
                .or_default()
                .insert(m.id);
        }
    }

    /// Drops the send start of a message that is no longer sending or sent.
    fn forget(&mut self, ws: WorkspaceId, id: OutboxMessageId) {
        let Some((Some(contact), _)) = self.started.remove(&(ws, id)) else {
            return;
        };
        if let Some(ids) = self.by_contact.get_mut(&(ws, contact)) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_contact.remove(&(ws, contact));
            }
        }
    }

    /// Whether `m` is marked sending.
    fn sending(&self, m: &OutboxMessage) -> bool {
        m.status == OutboxStatus::InFlight && self.started.contains_key(&(m.workspace_id, m.id))
    }
}

/// Gives back the unit `id` holds for `key`, if any.
fn release(t: &mut Tables, ws: WorkspaceId, id: OutboxMessageId, key: &QuotaKey) -> bool {
    let held = &mut t.outbox.gate.grants;
    let Some(keys) = held.get_mut(&(ws, id)) else {
        return false;
    };
    if !keys.remove(key) {
        return false;
    }
    if keys.is_empty() {
        held.remove(&(ws, id));
    }
    give_back(t, ws, key);
    true
}

/// Gives back every unit `id` holds (a message cancelled before it was sent).
fn release_all(t: &mut Tables, ws: WorkspaceId, id: OutboxMessageId) {
    for key in t.outbox.gate.grants.remove(&(ws, id)).unwrap_or_default() {
        give_back(t, ws, &key);
    }
}

fn give_back(t: &mut Tables, ws: WorkspaceId, key: &QuotaKey) {
    if let Some(used) = t.coordination.quotas.get_mut(&(ws, key.clone())) {
        *used = used.saturating_sub(1);
    }
}

/// Cancels `row` (an unsent message) as `finish_outbox` cancels: status, reason,
/// lease cleared, `outbox.cancelled`, and the waiting enrollment nudged.
fn cancel(t: &mut Tables, mut row: Fenced<OutboxMessage>, reason: &str, now: DateTime<Utc>) {
    let m = &mut row.row;
    m.status = OutboxStatus::Cancelled;
    m.lease = None;
    m.last_error = Some(reason.to_owned());
    m.updated_at = now;
    m.version += 1;
    let stored = t.outbox.put(row);
    // Built from a stored row: cannot fail, and this path has written already.
    let finished = events::outbox_finished(&stored, Some(reason)).unwrap_or_default();
    append_changes(t, &finished);
    if let Some(enrollment) = stored.enrollment_id {
        nudge_enrollment(t, stored.workspace_id, enrollment, stored.step_index, now);
    }
}

/// Cancels the unsent messages of `ws` that `hit` selects (`Pending`, or `InFlight`
/// and not marked sending), giving back every unit they held (none reached the
/// provider), and reports them with those already sending.
pub(crate) fn stop_sends(
    t: &mut Tables,
    ws: WorkspaceId,
    hit: impl Fn(&OutboxMessage) -> bool,
    reason: &str,
    now: DateTime<Utc>,
) -> StoppedSends {
    let mut stopped = StoppedSends::default();
    let mut unsent = Vec::new();
    for row in t.outbox.messages.rows(ws) {
        let m = &row.row;
        if !hit(m) {
            continue;
        }
        if t.outbox.gate.sending(m) {
            stopped.in_flight.push(m.id);
        } else if matches!(m.status, OutboxStatus::Pending | OutboxStatus::InFlight) {
            unsent.push(row.clone());
        }
    }
    for row in unsent {
        stopped.cancelled.push(row.row.id);
        release_all(t, ws, row.row.id);
        cancel(t, row, reason, now);
    }
    stopped.cancelled.sort_unstable();
    stopped.in_flight.sort_unstable();
    stopped
}

/// [`stop_sends`] for a suppression just stored.
pub(crate) fn stop_suppressed(t: &mut Tables, s: &Suppression) -> StoppedSends {
    let reason = format!("recipient is suppressed ({})", s.reason);
    let address = s.address.clone();
    let channel = s.channel;
    stop_sends(
        t,
        s.workspace_id,
        |m| channel.is_none_or(|c| c == m.channel) && normalize_address(&m.recipient) == address,
        &reason,
        s.created_at,
    )
}

/// [`stop_sends`] for a consent entry just stored, if the consent in force is now
/// withdrawn.
pub(crate) fn stop_withdrawn(
    t: &mut Tables,
    ws: WorkspaceId,
    contact: ContactId,
    channel: Channel,
    now: DateTime<Utc>,
) -> StoppedSends {
    let withdrawn = current_consent(&t.compliance, ws, contact, channel)
        .is_some_and(|c| c.status == ConsentStatus::Withdrawn);
    if !withdrawn {
        return StoppedSends::default();
    }
    let reason = format!("contact withdrew consent for {channel}");
    stop_sends(
        t,
        ws,
        |m| m.contact_id == Some(contact) && m.channel == channel,
        &reason,
        now,
    )
}

/// Touches of `s.contact_id` in `[day_start, day_end)`: messages marked sending or
/// sent there (only those have a send start), `s`'s own message excluded.
fn touches(t: &Tables, s: &SendStart, day_start: DateTime<Utc>, day_end: DateTime<Utc>) -> u64 {
    let gate = &t.outbox.gate;
    let Some(ids) = gate.by_contact.get(&(s.workspace_id, s.contact_id)) else {
        return 0;
    };
    let counted = ids.iter().filter(|&&id| {
        id != s.outbox_id
            && gate
                .started
                .get(&(s.workspace_id, id))
                .is_some_and(|(_, at)| *at >= day_start && *at < day_end)
    });
    u64::try_from(counted.count()).unwrap_or(u64::MAX)
}

/// One start of `begin_sends`.
fn begin_one(t: &mut Tables, s: &SendStart, now: DateTime<Utc>) -> SendStartOutcome {
    let ws = s.workspace_id;
    let Some(row) = t.outbox.messages.get(ws, s.outbox_id).cloned() else {
        return SendStartOutcome::NotInFlight;
    };
    if row.row.status != OutboxStatus::InFlight {
        return SendStartOutcome::NotInFlight;
    }
    if row
        .row
        .lease
        .as_ref()
        .is_none_or(|l| l.token != s.lease_token)
    {
        return SendStartOutcome::LeaseLost;
    }
    let address = normalize_address(&s.recipient);
    if let Some(found) = blocking_suppression(&t.compliance, ws, s.channel, address) {
        let reason = format!("recipient is suppressed ({})", found.reason);
        release(t, ws, s.outbox_id, &s.quota_key);
        cancel(t, row, &reason, now);
        return SendStartOutcome::Suppressed {
            reason: found.reason,
        };
    }
    let withdrawn = current_consent(&t.compliance, ws, s.contact_id, s.channel)
        .is_some_and(|c| c.status == ConsentStatus::Withdrawn);
    if withdrawn {
        let reason = format!("contact withdrew consent for {}", s.channel);
        release(t, ws, s.outbox_id, &s.quota_key);
        cancel(t, row, &reason, now);
        return SendStartOutcome::ConsentWithdrawn;
    }
    if let Some(limit) = s.touch_limit
        && touches(t, s, limit.day_start, limit.day_end) >= u64::from(limit.limit)
    {
        release(t, ws, s.outbox_id, &s.quota_key);
        return SendStartOutcome::TouchLimit;
    }
    let held = t
        .outbox
        .gate
        .grants
        .get(&(ws, s.outbox_id))
        .is_some_and(|keys| keys.contains(&s.quota_key));
    if !held {
        let used = t
            .coordination
            .quotas
            .entry((ws, s.quota_key.clone()))
            .or_insert(0);
        if used.saturating_add(1) > s.cap {
            return SendStartOutcome::OverCap;
        }
        *used += 1;
        t.outbox
            .gate
            .grants
            .entry((ws, s.outbox_id))
            .or_default()
            .insert(s.quota_key.clone());
    }
    let mut row = row;
    row.row.updated_at = now;
    row.row.version += 1;
    let stored = t.outbox.put(row);
    t.outbox.gate.start(&stored, now);
    SendStartOutcome::Go
}

/// `begin_sends`: every start in order, under the one lock.
pub(crate) fn begin_sends(
    t: &mut Tables,
    starts: &[SendStart],
    now: DateTime<Utc>,
) -> Vec<SendStartOutcome> {
    starts.iter().map(|s| begin_one(t, s, now)).collect()
}

/// `release_send_quota`.
pub(crate) fn release_send_quota(
    t: &mut Tables,
    ws: WorkspaceId,
    id: OutboxMessageId,
    key: &QuotaKey,
) -> Result<bool, StoreError> {
    let status = t.outbox.messages.find(ws, id)?.row.status;
    let ended_unsent = matches!(
        status,
        OutboxStatus::Failed | OutboxStatus::DeadLettered | OutboxStatus::Cancelled
    );
    Ok(ended_unsent && release(t, ws, id, key))
}
