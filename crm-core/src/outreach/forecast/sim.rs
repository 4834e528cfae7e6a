//! The forecast's simulation: walkers over enrollments, day counters, checks.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{ForecastEntry, ForecastOutcome, HoldReason};
use crate::error::StoreError;
use crate::ids::{ContactId, EnrollmentId, WorkspaceId};
use crate::model::{
    Account, Channel, ConsentStatus, Contact, Enrollment, EnrollmentState, OutboxMessage,
    OutboxStatus, Sequence,
};
use crate::outreach::runner::{
    MergeValues, contact_address, contact_time_zone, extra_values, touches_today,
};
use crate::outreach::schedule::{apply_delay, local_day, next_allowed, start_of_next_day};
use crate::outreach::settings::WorkspaceSettings;
use crate::outreach::settings::send_quota_key;
use crate::outreach::template::{MergeContext, render};
use crate::store::ForecastStore;
use crate::store::{ComplianceStoreExt, Page};

/// One enrollment being walked through its steps.
#[derive(Debug)]
pub(super) struct Walker {
    pub(super) enrollment: Enrollment,
    pub(super) sequence: Arc<Sequence>,
    pub(super) contact: Arc<Contact>,
    pub(super) tz: Tz,
    pub(super) step: usize,
    pub(super) due_at: DateTime<Utc>,
    pub(super) at: DateTime<Utc>,
    pub(super) postponed_by: Vec<HoldReason>,
    /// The step's message is queued already (not rendered again).
    pub(super) queued: Option<OutboxMessage>,
}

pub(super) struct Sim<'s> {
    pub(super) store: &'s dyn ForecastStore,
    pub(super) settings: WorkspaceSettings,
    pub(super) workspace_id: WorkspaceId,
    pub(super) now: DateTime<Utc>,
    pub(super) horizon: DateTime<Utc>,
    pub(super) touch_limit: bool,
    pub(super) merge_values: Option<&'s Arc<dyn MergeValues>>,
    pub(super) quota_used: HashMap<(Channel, NaiveDate), u32>,
    pub(super) touches: HashMap<(ContactId, NaiveDate), u64>,
    pub(super) compliance: HashMap<(ContactId, Channel), Option<HoldReason>>,
    pub(super) accounts: HashMap<crate::ids::AccountId, Option<Account>>,
    pub(super) entries: Vec<ForecastEntry>,
}

impl Sim<'_> {
    /// Queued, unsent messages of enrollments, by enrollment.
    pub(super) async fn queued_messages(
        &self,
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

    /// Where an enrollment's walk begins, or `None` (after recording why) if it has
    /// nothing left to send.
    pub(super) fn start(
        &mut self,
        enrollment: Enrollment,
        sequence: Arc<Sequence>,
        contact: Arc<Contact>,
        message: Option<OutboxMessage>,
    ) -> Option<Walker> {
        let tz = contact_time_zone(&contact, &self.settings);
        let k = usize::try_from(enrollment.current_step).unwrap_or(usize::MAX);
        let n = sequence.steps.len();
        let mut queued = None;
        let due = match enrollment.state {
            // The runner starts it with the window applied; the walk applies the
            // window itself so the entry shows it.
            EnrollmentState::Pending => sequence
                .steps
                .first()
                .and_then(|s| apply_delay(s.delay, tz, enrollment.created_at).ok()),
            EnrollmentState::StepPending => {
                let m = message.filter(|m| m.step_index == Some(enrollment.current_step))?;
                let due = m.not_before;
                queued = Some(m);
                Some(due)
            }
            EnrollmentState::StepSent if k >= n => None,
            EnrollmentState::Paused if enrollment.next_run_at.is_none() => {
                self.hold(&enrollment, &sequence, k, HoldReason::Paused, None, None);
                None
            }
            _ => enrollment.next_run_at,
        }?;
        if k >= n && enrollment.state != EnrollmentState::Pending {
            let reason = HoldReason::Conflict {
                detail: format!("step {k} no longer exists"),
            };
            self.hold(&enrollment, &sequence, k, reason, Some(due), None);
            return None;
        }
        let step = if enrollment.state == EnrollmentState::Pending {
            0
        } else {
            k
        };
        Some(Walker {
            enrollment,
            sequence,
            contact,
            tz,
            step,
            due_at: due,
            at: due.max(self.now),
            postponed_by: Vec::new(),
            queued,
        })
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

    /// Looks at the walker's step at `w.at`. Returns whether to look again at the
    /// (updated) `w.at`.
    pub(super) async fn visit(&mut self, w: &mut Walker) -> Result<bool, StoreError> {
        let Some(step) = w.sequence.steps.get(w.step).cloned() else {
            return Ok(false);
        };
        if w.at >= self.horizon {
            if let Some(reason) = w.postponed_by.last().cloned() {
                let (due, at) = (w.due_at, w.at);
                self.hold(
                    &w.enrollment,
                    &w.sequence,
                    w.step,
                    reason,
                    Some(due),
                    Some(at),
                );
            }
            return Ok(false);
        }
        let t = w.at;
        let held = |sim: &mut Self, w: &Walker, reason| {
            sim.hold(
                &w.enrollment,
                &w.sequence,
                w.step,
                reason,
                Some(w.due_at),
                None,
            );
        };
        if let Some(reason) = self.compliance(&w.contact, step.channel).await? {
            held(self, w, reason);
            return Ok(false);
        }
        if let Some(m) = &w.queued
            && m.status == OutboxStatus::AwaitingApproval
        {
            held(self, w, HoldReason::Approval);
            return Ok(false);
        }
        if w.queued.is_none() {
            if let Some(detail) = self.render_problem(&w.contact, &step.template).await? {
                held(self, w, HoldReason::Conflict { detail });
                return Ok(false);
            }
            let allowed = next_allowed(step.window.as_ref(), w.tz, t);
            if allowed > t {
                return Ok(postpone(w, HoldReason::Window, allowed));
            }
            if self.touch_limit && step.channel != Channel::ManualTask {
                let day = local_day(w.tz, t);
                let limit = self.settings.daily_touch_limit;
                if self.touches(&w.contact, w.tz, day).await? >= u64::from(limit) {
                    let next =
                        next_allowed(step.window.as_ref(), w.tz, start_of_next_day(w.tz, day));
                    return Ok(postpone(w, HoldReason::TouchLimit { limit }, next));
                }
            }
        }
        let qtz = self.settings.default_time_zone;
        let qday = local_day(qtz, t);
        let cap = self.settings.daily_cap(step.channel);
        if self.quota(step.channel, qday).await? >= cap {
            let next = next_allowed(step.window.as_ref(), w.tz, start_of_next_day(qtz, qday));
            let reason = HoldReason::Quota {
                channel: step.channel,
                cap,
            };
            return Ok(postpone(w, reason, next.max(t + Duration::seconds(1))));
        }

        // Planned.
        *self.quota_used.entry((step.channel, qday)).or_insert(0) += 1;
        if step.channel != Channel::ManualTask {
            let day = local_day(w.tz, t);
            self.touches(&w.contact, w.tz, day).await?;
            *self.touches.entry((w.contact.id, day)).or_insert(0) += 1;
        }
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
        w.queued = None;
        w.step += 1;
        let Some(next) = w.sequence.steps.get(w.step) else {
            return Ok(false);
        };
        // A delay outside the calendar (only one past its maximum) ends the walk.
        let Ok(due_at) = apply_delay(next.delay, w.tz, t) else {
            return Ok(false);
        };
        w.due_at = due_at;
        w.at = w.due_at.max(t);
        Ok(true)
    }

    /// Why the contact cannot get messages on `channel`, if it cannot.
    async fn compliance(
        &mut self,
        contact: &Contact,
        channel: Channel,
    ) -> Result<Option<HoldReason>, StoreError> {
        if channel == Channel::ManualTask {
            return Ok(None);
        }
        if let Some(found) = self.compliance.get(&(contact.id, channel)) {
            return Ok(found.clone());
        }
        let ws = self.workspace_id;
        let reason = match contact_address(contact, channel) {
            None => Some(HoldReason::Conflict {
                detail: format!("no {channel} address"),
            }),
            Some(address) => match self.store.find_suppression(ws, channel, &address).await? {
                Some(s) => Some(HoldReason::Suppression {
                    reason: Some(s.reason),
                }),
                None => self
                    .store
                    .current_consent(ws, contact.id, channel)
                    .await?
                    .filter(|c| c.status == ConsentStatus::Withdrawn)
                    .map(|_| HoldReason::Suppression { reason: None }),
            },
        };
        self.compliance
            .insert((contact.id, channel), reason.clone());
        Ok(reason)
    }

    /// Why the template cannot be rendered for the contact (field names only).
    async fn render_problem(
        &mut self,
        contact: &Contact,
        template: &crate::model::Template,
    ) -> Result<Option<String>, StoreError> {
        let account = match contact.account_id {
            None => None,
            Some(id) => {
                if !self.accounts.contains_key(&id) {
                    let found = match self.store.get_account(self.workspace_id, id).await {
                        Ok(a) => Some(a),
                        Err(e) if e.kind() == crate::error::StoreErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    };
                    self.accounts.insert(id, found);
                }
                self.accounts.get(&id).and_then(Option::as_ref)
            }
        };
        let extra = extra_values(self.merge_values, self.workspace_id, contact).await;
        let ctx = MergeContext::new(contact, account).with_extra(&extra);
        let result = render(&template.body, &ctx).and_then(|_| {
            template
                .subject
                .as_deref()
                .map(|s| render(s, &ctx))
                .transpose()
        });
        Ok(result.err().map(|e| e.to_string()))
    }

    async fn quota(&mut self, channel: Channel, day: NaiveDate) -> Result<u32, StoreError> {
        if let Some(used) = self.quota_used.get(&(channel, day)) {
            return Ok(*used);
        }
        let today = local_day(self.settings.default_time_zone, self.now);
        let used = if day == today {
            self.store
                .quota_usage(self.workspace_id, &send_quota_key(channel, day))
                .await?
        } else {
            0
        };
        self.quota_used.insert((channel, day), used);
        Ok(used)
    }

    async fn touches(
        &mut self,
        contact: &Contact,
        tz: Tz,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        if let Some(n) = self.touches.get(&(contact.id, day)) {
            return Ok(*n);
        }
        let n = if day == local_day(tz, self.now) {
            touches_today(self.store, self.workspace_id, contact.id, tz, self.now).await?
        } else {
            0
        };
        self.touches.insert((contact.id, day), n);
        Ok(n)
    }
}

/// Moves the walker to `until`, recording why.
fn postpone(w: &mut Walker, reason: HoldReason, until: DateTime<Utc>) -> bool {
    if w.postponed_by.last() != Some(&reason) {
        w.postponed_by.push(reason);
    }
    w.at = until;
    true
}
