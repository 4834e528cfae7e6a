//! The forecast's simulation: the runner and the dispatcher over the enrollments'
//! steps, one event at a time in the order the real ones meet them.
//!
//! An enrollment is a [`Walker`]. While its step is not queued it waits for the runner
//! (at `run_at`); once queued it waits for the dispatcher (at its message's
//! `not_before`). Events run in the order of (the tick they fall on, runner before
//! dispatcher, then the order each side uses: the runner its due enrollments by
//! `next_run_at` then id, the dispatcher its due messages by `not_before` then outbox
//! id, i.e. enqueue order).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{ForecastEntry, ForecastOutcome, HoldReason, MAX_EVENTS};
use crate::error::StoreError;
use crate::ids::{ContactId, EnrollmentId, WorkspaceId};
use crate::model::{
    Account, Channel, Contact, Enrollment, EnrollmentState, OutboxMessage, OutboxStatus, Sequence,
};
use crate::outreach::runner::{MergeValues, contact_time_zone};
use crate::outreach::schedule::{apply_delay, local_day, next_allowed, start_of_next_day};
use crate::outreach::settings::WorkspaceSettings;
use crate::store::ForecastStore;
use crate::store::Page;

/// Where a message stands in the dispatcher's order: messages already in the outbox by
/// their id (`(0, id)`), then those the simulation queues, in queueing order.
type Seq = (u8, u128);

/// One event: (tick, 0 = runner / 1 = dispatcher, the side's own order, tie, walker).
type Key = (DateTime<Utc>, u8, DateTime<Utc>, Seq, usize);

/// A step's message in the outbox.
#[derive(Debug, Clone, Copy)]
struct Queued {
    not_before: DateTime<Utc>,
    seq: Seq,
    awaiting_approval: bool,
}

/// One enrollment being walked through its steps.
#[derive(Debug)]
pub(super) struct Walker {
    enrollment: Enrollment,
    sequence: Arc<Sequence>,
    contact: Arc<Contact>,
    tz: Tz,
    step: usize,
    due_at: DateTime<Utc>,
    /// When the runner looks at the step (its `next_run_at`), while it is not queued.
    run_at: DateTime<Utc>,
    /// The runner's order among enrollments due in the same tick.
    order_at: DateTime<Utc>,
    postponed_by: Vec<HoldReason>,
    queued: Option<Queued>,
}

pub(super) struct Sim<'s> {
    pub(super) store: &'s dyn ForecastStore,
    pub(super) settings: WorkspaceSettings,
    pub(super) workspace_id: WorkspaceId,
    pub(super) now: DateTime<Utc>,
    pub(super) horizon: DateTime<Utc>,
    pub(super) tick: Option<Duration>,
    pub(super) touch_limit: bool,
    pub(super) merge_values: Option<&'s Arc<dyn MergeValues>>,
    pub(super) quota_used: HashMap<(Channel, NaiveDate), u32>,
    /// Messages sent to a contact on its local day (what the dispatcher counts).
    pub(super) sent: HashMap<(ContactId, NaiveDate), u64>,
    /// Each contact's queued messages: walker (or outside message) -> `not_before`.
    pub(super) queued: HashMap<ContactId, HashMap<QueuedKey, DateTime<Utc>>>,
    pub(super) compliance: HashMap<(ContactId, Channel), Option<HoldReason>>,
    pub(super) accounts: HashMap<crate::ids::AccountId, Option<Account>>,
    pub(super) entries: Vec<ForecastEntry>,
    pub(super) walkers: Vec<Option<Walker>>,
    pub(super) next_seq: u128,
    pub(super) heap: BinaryHeap<Reverse<Key>>,
}

/// A queued message in [`Sim::queued`]: a walker's, or one the forecast does not walk
/// (queued by the host, or of an enrollment with nothing left to walk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum QueuedKey {
    Walker(usize),
    Outside(u128),
}

impl Sim<'_> {
    /// Queued, unsent messages of enrollments, by enrollment; every queued message to a
    /// contact is remembered for the touch limit.
    pub(super) async fn queued_messages(
        &mut self,
    ) -> Result<HashMap<EnrollmentId, OutboxMessage>, StoreError> {
        let mut by_enrollment = HashMap::new();
        for status in [
            OutboxStatus::Pending,
            OutboxStatus::AwaitingApproval,
            OutboxStatus::InFlight,
        ] {
            let mut page = Page::first(Page::<crate::ids::OutboxMessageId>::MAX_LIMIT);
            loop {
                let batch = self
                    .store
                    .list_outbox(self.workspace_id, Some(status), page)
                    .await?;
                let full = batch.len() >= page.limit as usize;
                let Some(last) = batch.last() else { break };
                page = Page::after(last.id, page.limit);
                for m in batch {
                    if let Some(contact) = m.contact_id
                        && m.channel != Channel::ManualTask
                    {
                        self.queued
                            .entry(contact)
                            .or_default()
                            .insert(QueuedKey::Outside(m.id.as_uuid().as_u128()), m.not_before);
                    }
                    if let Some(e) = m.enrollment_id {
                        by_enrollment.insert(e, m);
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(by_enrollment)
    }

    /// The first run of the runner and the dispatcher at or after `t`: `t` itself
    /// without a tick, else the next multiple of the tick after the forecast's now.
    fn on_tick(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let t = t.max(self.now);
        let Some(tick) = self.tick.filter(|d| *d > Duration::zero()) else {
            return t;
        };
        let (Some(step), Some(since)) =
            (tick.num_microseconds(), (t - self.now).num_microseconds())
        else {
            return t;
        };
        let ticks = since.div_euclid(step) + i64::from(since.rem_euclid(step) != 0);
        ticks
            .checked_mul(step)
            .and_then(|us| self.now.checked_add_signed(Duration::microseconds(us)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Schedules the walker's next event.
    fn schedule(&mut self, i: usize) {
        let Some(w) = self.walkers.get(i).and_then(Option::as_ref) else {
            return;
        };
        let key = match w.queued {
            Some(q) => (self.on_tick(q.not_before), 1, q.not_before, q.seq, i),
            None => {
                let id = w.enrollment.id.as_uuid().as_u128();
                (self.on_tick(w.run_at), 0, w.order_at, (0, id), i)
            }
        };
        self.heap.push(Reverse(key));
    }

    /// Starts walking an enrollment (after recording why, if it has nothing to walk).
    pub(super) fn start(
        &mut self,
        enrollment: Enrollment,
        sequence: Arc<Sequence>,
        contact: Arc<Contact>,
        message: Option<OutboxMessage>,
    ) {
        let tz = contact_time_zone(&contact, &self.settings);
        let k = usize::try_from(enrollment.current_step).unwrap_or(usize::MAX);
        let n = sequence.steps.len();
        let mut queued = None;
        let mut postponed_by = Vec::new();
        let next_run = enrollment.next_run_at.unwrap_or(self.now);
        let (due, run_at, order_at) = match enrollment.state {
            EnrollmentState::Pending => {
                // The runner starts it at its first run, with the first step due after
                // its delay inside its window, and sends at once when that is due.
                let Some(first) = sequence.steps.first() else {
                    return;
                };
                let Ok(due) = apply_delay(first.delay, tz, enrollment.created_at) else {
                    let reason = HoldReason::Conflict {
                        detail: "step 0's delay cannot be scheduled".to_owned(),
                    };
                    self.hold(&enrollment, &sequence, 0, reason, None, None);
                    return;
                };
                let first_due = next_allowed(first.window.as_ref(), tz, due);
                if first_due <= self.on_tick(next_run) {
                    (due, next_run, next_run)
                } else {
                    if first_due > due {
                        postponed_by.push(HoldReason::Window);
                    }
                    (due, first_due, first_due)
                }
            }
            EnrollmentState::StepPending => {
                let Some(m) = message.filter(|m| m.step_index == Some(enrollment.current_step))
                else {
                    return;
                };
                queued = Some(Queued {
                    not_before: m.not_before,
                    seq: (0, m.id.as_uuid().as_u128()),
                    awaiting_approval: m.status == OutboxStatus::AwaitingApproval,
                });
                (m.not_before, m.not_before, m.not_before)
            }
            EnrollmentState::StepSent if k >= n => return,
            EnrollmentState::Paused if enrollment.next_run_at.is_none() => {
                self.hold(&enrollment, &sequence, k, HoldReason::Paused, None, None);
                return;
            }
            _ => match enrollment.next_run_at {
                Some(at) => (at, at, at),
                None => return,
            },
        };
        if k >= n && enrollment.state != EnrollmentState::Pending {
            let reason = HoldReason::Conflict {
                detail: format!("step {k} no longer exists"),
            };
            self.hold(&enrollment, &sequence, k, reason, Some(due), None);
            return;
        }
        let step = if enrollment.state == EnrollmentState::Pending {
            0
        } else {
            k
        };
        let i = self.walkers.len();
        if let Some(q) = queued {
            // The message is the walker's now, not an outside one.
            let slot = self.queued.entry(contact.id).or_default();
            slot.remove(&QueuedKey::Outside(q.seq.1));
            if contact_counts(&sequence, step) {
                slot.insert(QueuedKey::Walker(i), q.not_before);
            }
        }
        self.walkers.push(Some(Walker {
            enrollment,
            sequence,
            contact,
            tz,
            step,
            due_at: due,
            run_at,
            order_at,
            postponed_by,
            queued,
        }));
        self.schedule(i);
    }

    /// Runs every event in order until the horizon (or the event bound).
    pub(super) async fn run(&mut self) -> Result<(), StoreError> {
        let mut events = 0;
        while let Some(Reverse((t, side, _, _, i))) = self.heap.pop() {
            events += 1;
            if events > MAX_EVENTS {
                break;
            }
            let Some(mut w) = self.walkers.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let again = if t >= self.horizon {
                self.beyond_horizon(&w, t);
                false
            } else if side == 0 {
                self.runner(i, &mut w, t).await?
            } else {
                self.dispatcher(i, &mut w, t).await?
            };
            if let Some(slot) = self.walkers.get_mut(i) {
                *slot = Some(w);
            }
            if again {
                self.schedule(i);
            }
        }
        Ok(())
    }

    /// A step postponed past the horizon is reported held with its last reason.
    fn beyond_horizon(&mut self, w: &Walker, t: DateTime<Utc>) {
        if let Some(reason) = w.postponed_by.last().cloned() {
            let until = w.queued.map_or(w.run_at, |q| q.not_before).max(t);
            let (due, step) = (w.due_at, w.step);
            self.hold(
                &w.enrollment,
                &w.sequence,
                step,
                reason,
                Some(due),
                Some(until),
            );
        }
    }

    fn hold(
        &mut self,
        e: &Enrollment,
        sequence: &Sequence,
        step: usize,
        reason: HoldReason,
        due_at: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) {
        let channel = sequence
            .steps
            .get(step)
            .map_or(Channel::ManualTask, |s| s.channel);
        self.entries.push(ForecastEntry {
            enrollment_id: e.id,
            contact_id: e.contact_id,
            sequence_id: e.sequence_id,
            step: i32::try_from(step).unwrap_or(i32::MAX),
            channel,
            outcome: ForecastOutcome::HeldBack {
                reason,
                due_at,
                until,
            },
        });
    }

    fn held(&mut self, w: &Walker, reason: HoldReason) {
        self.hold(
            &w.enrollment,
            &w.sequence,
            w.step,
            reason,
            Some(w.due_at),
            None,
        );
    }

    /// The runner at `t` (a due step, not queued): window, then the touch limit
    /// counting sent and queued messages of the contact's local day, then it queues the
    /// step with `not_before = t`. Returns whether the walker has a next event.
    async fn runner(
        &mut self,
        i: usize,
        w: &mut Walker,
        t: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(step) = w.sequence.steps.get(w.step).cloned() else {
            return Ok(false);
        };
        if let Some(reason) = self.compliance(&w.contact, step.channel).await? {
            self.held(w, reason);
            return Ok(false);
        }
        if let Some(detail) = self.render_problem(&w.contact, &step.template).await? {
            self.held(w, HoldReason::Conflict { detail });
            return Ok(false);
        }
        let allowed = next_allowed(step.window.as_ref(), w.tz, t);
        if allowed > t {
            postpone(w, HoldReason::Window, allowed);
            return Ok(true);
        }
        let counts = step.channel != Channel::ManualTask;
        if self.touch_limit && counts {
            let day = local_day(w.tz, t);
            let limit = self.settings.daily_touch_limit;
            let end = start_of_next_day(w.tz, day);
            let queued = self
                .queued
                .get(&w.contact.id)
                .map_or(0, |q| q.values().filter(|nb| **nb < end).count());
            let sent = self.sent_on(&w.contact, w.tz, day).await?;
            let touches = sent.saturating_add(u64::try_from(queued).unwrap_or(u64::MAX));
            if touches >= u64::from(limit) {
                let next = next_allowed(step.window.as_ref(), w.tz, end);
                postpone(
                    w,
                    HoldReason::TouchLimit { limit },
                    next.max(t + TICK_FLOOR),
                );
                return Ok(true);
            }
        }
        self.next_seq = self.next_seq.saturating_add(1);
        w.queued = Some(Queued {
            not_before: t,
            seq: (1, self.next_seq),
            awaiting_approval: false,
        });
        if counts {
            self.queued
                .entry(w.contact.id)
                .or_default()
                .insert(QueuedKey::Walker(i), t);
        }
        Ok(true)
    }

    /// The dispatcher at `t` (a queued step's message): window, the contact's touches
    /// sent that local day, the workspace's daily cap of the channel; then the send.
    async fn dispatcher(
        &mut self,
        i: usize,
        w: &mut Walker,
        t: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (Some(step), Some(mut q)) = (w.sequence.steps.get(w.step).cloned(), w.queued) else {
            return Ok(false);
        };
        if q.awaiting_approval {
            self.held(w, HoldReason::Approval);
            return Ok(false);
        }
        if let Some(reason) = self.compliance(&w.contact, step.channel).await? {
            // The dispatcher cancels it: no longer queued.
            self.unqueue(i, w);
            self.held(w, reason);
            return Ok(false);
        }
        let window = step.window.as_ref();
        let counts = step.channel != Channel::ManualTask;
        let day = local_day(w.tz, t);
        let wait = if next_allowed(window, w.tz, t) > t {
            Some((HoldReason::Window, next_allowed(window, w.tz, t)))
        } else if self.touch_limit
            && counts
            && self.sent_on(&w.contact, w.tz, day).await?
                >= u64::from(self.settings.daily_touch_limit)
        {
            let limit = self.settings.daily_touch_limit;
            let until = next_allowed(window, w.tz, start_of_next_day(w.tz, day));
            Some((HoldReason::TouchLimit { limit }, until))
        } else {
            let qtz = self.settings.default_time_zone;
            let qday = local_day(qtz, t);
            let cap = self.settings.daily_cap(step.channel);
            if self.quota(step.channel, qday).await? >= cap {
                let reason = HoldReason::Quota {
                    channel: step.channel,
                    cap,
                };
                Some((
                    reason,
                    next_allowed(window, w.tz, start_of_next_day(qtz, qday)),
                ))
            } else {
                None
            }
        };
        if let Some((reason, until)) = wait {
            q.not_before = until.max(t + TICK_FLOOR);
            w.queued = Some(q);
            if w.postponed_by.last() != Some(&reason) {
                w.postponed_by.push(reason);
            }
            if counts && let Some(slot) = self.queued.get_mut(&w.contact.id) {
                slot.insert(QueuedKey::Walker(i), q.not_before);
            }
            return Ok(true);
        }

        // Sent at `t`.
        let qday = local_day(self.settings.default_time_zone, t);
        self.quota(step.channel, qday).await?;
        *self.quota_used.entry((step.channel, qday)).or_insert(0) += 1;
        if counts {
            self.sent_on(&w.contact, w.tz, day).await?;
            *self.sent.entry((w.contact.id, day)).or_insert(0) += 1;
        }
        self.unqueue(i, w);
        self.entries.push(ForecastEntry {
            enrollment_id: w.enrollment.id,
            contact_id: w.enrollment.contact_id,
            sequence_id: w.enrollment.sequence_id,
            step: i32::try_from(w.step).unwrap_or(i32::MAX),
            channel: step.channel,
            outcome: ForecastOutcome::Planned {
                due_at: w.due_at,
                at: t,
                needs_approval: step.requires_approval,
                postponed_by: std::mem::take(&mut w.postponed_by),
            },
        });
        w.step += 1;
        let Some(next) = w.sequence.steps.get(w.step) else {
            return Ok(false);
        };
        // The dispatcher schedules the next step as it records the send: its delay
        // from the send, moved into its window.
        let Ok(due) = apply_delay(next.delay, w.tz, t) else {
            let detail = format!("step {}'s delay cannot be scheduled", w.step);
            self.held(w, HoldReason::Conflict { detail });
            return Ok(false);
        };
        w.due_at = due;
        w.run_at = next_allowed(next.window.as_ref(), w.tz, due);
        w.order_at = w.run_at;
        if w.run_at > due {
            w.postponed_by.push(HoldReason::Window);
        }
        Ok(true)
    }

    fn unqueue(&mut self, i: usize, w: &mut Walker) {
        w.queued = None;
        if let Some(slot) = self.queued.get_mut(&w.contact.id) {
            slot.remove(&QueuedKey::Walker(i));
        }
    }
}

/// The least a postponement moves a step, so the walk always advances.
const TICK_FLOOR: Duration = Duration::seconds(1);

/// Whether `step` of `sequence` touches the contact (every channel but manual tasks).
fn contact_counts(sequence: &Sequence, step: usize) -> bool {
    sequence
        .steps
        .get(step)
        .is_some_and(|s| s.channel != Channel::ManualTask)
}

/// Moves the walker's runner visit to `until`, recording why.
fn postpone(w: &mut Walker, reason: HoldReason, until: DateTime<Utc>) {
    if w.postponed_by.last() != Some(&reason) {
        w.postponed_by.push(reason);
    }
    w.run_at = until;
    w.order_at = until;
}
