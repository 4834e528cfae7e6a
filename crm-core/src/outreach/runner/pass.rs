//! One pass over one workspace's due enrollments, a page at a time.
//!
//! The page's contacts and their day's touches are read in one batched call each
//! ([`page`]); each enrollment is then worked out in Rust, in due order, exactly as if
//! its changes were written one by one: a change's result is the stored row it
//! predicts (version + 1), touches queued earlier in the page count for later
//! enrollments of the same contact. Every change of the page is then written in one
//! [`advance_enrollments`](crate::store::SequenceStore::advance_enrollments) call,
//! each with its own compare-and-set; an enrollment whose write was refused (another
//! actor moved it) is superseded and its later changes are dropped with it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

use std::collections::HashMap;
use std::sync::Arc;

use super::support::{
    Definitions, MergeValues, contact_address, contact_time_zone, extra_values,
    manual_task_recipient, step_count,
};
use super::{EnrollmentFailure, RunnerConfig, RunnerError, TenantReport};
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{AccountId, ContactId, WorkspaceId};
use crate::model::{
    Account, Channel, Contact, Enrollment, EnrollmentState, OutboxMessage, Sequence,
    SequenceStatus, SequenceStep, end_reasons,
};
use crate::outreach::enrollment::{Effect, EnrollmentEvent, step_idempotency_key, transition};
use crate::outreach::schedule::{
    DelayOutOfRange, apply_delay, local_day, next_allowed, start_of_next_day,
};
use crate::outreach::settings::WorkspaceSettings;
use crate::outreach::template::{MergeContext, TemplateError, render};
use crate::store::EnrollmentChange;
use crate::store::RunnerStore;

use super::channel_meta::{channel_metadata, step_booking_link};

mod page;
mod pending;

use page::{Action, PageData, Planned};

/// How often one enrollment is looked at in one pass: start, resume, then its step.
const MAX_ROUNDS: usize = 3;

/// What to do after one event.
enum Next {
    /// Look at the enrollment again (it was started or resumed): the row its change
    /// stores.
    Again(Enrollment),
    /// Done for this tick.
    Done,
}

/// Which counter an applied change feeds.
#[derive(Clone, Copy)]
enum Count {
    Started,
    Resumed,
    Postponed,
    Exhausted,
    Parked,
    Enqueued,
    Skipped,
    Failed,
    Stopped,
    Held,
    Rechecked,
}

/// A step the runner could not build, and how it is recorded.
struct Problem {
    action: &'static str,
    details: serde_json::Value,
}

pub(super) struct Pass<'a> {
    store: &'a dyn RunnerStore,
    config: &'a RunnerConfig,
    merge_values: Option<&'a Arc<dyn MergeValues>>,
    settings: WorkspaceSettings,
    workspace_id: WorkspaceId,
    now: DateTime<Utc>,
    definitions: Definitions<'a>,
    report: TenantReport,
    /// The reason code the next park records (the problem's action).
    park_reason: Option<&'static str>,
    /// The page's contacts and touches.
    page: PageData,
    /// Accounts read in this pass (contacts share them).
    accounts: HashMap<AccountId, Option<Account>>,
    /// The changes and failures worked out and not yet written, in order.
    actions: Vec<Action>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        store: &'a dyn RunnerStore,
        config: &'a RunnerConfig,
        merge_values: Option<&'a Arc<dyn MergeValues>>,
        settings: WorkspaceSettings,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            store,
            config,
            merge_values,
            settings,
            workspace_id,
            now,
            definitions: Definitions::new(store, workspace_id),
            report: TenantReport {
                workspace_id,
                ..TenantReport::default()
            },
            park_reason: None,
            page: PageData::default(),
            accounts: HashMap::new(),
            actions: Vec::new(),
        }
    }

    /// Works out every due enrollment, then writes the page. Fails as a whole only if
    /// the page's batched reads or its write fail.
    pub(super) async fn run(mut self, due: Vec<Enrollment>) -> Result<TenantReport, RunnerError> {
        self.report.due = due.len();
        // The sequences are read while the page's contacts and touches are.
        let (page, ()) = futures::join!(
            PageData::load(
                self.store,
                self.workspace_id,
                &self.settings,
                self.now,
                &due,
                self.config.enforce_touch_limit,
            ),
            self.definitions.preload(&due),
        );
        self.page = page?;
        let mut later: HashMap<ContactId, usize> = HashMap::new();
        for e in &due {
            *later.entry(e.contact_id).or_default() += 1;
        }
        for enrollment in due {
            let (enrollment_id, contact_id) = (enrollment.id, enrollment.contact_id);
            let first = self.actions.len();
            if let Err(error) = self.drive(enrollment).await {
                self.actions.push(Action::Fail(EnrollmentFailure {
                    enrollment_id,
                    error,
                }));
            }
            let left = later.entry(contact_id).or_default();
            *left = left.saturating_sub(1);
            // Cancelled messages no longer count as touches: a later enrollment of the
            // same contact counts them as the store has them after this write.
            if *left > 0
                && self.config.enforce_touch_limit
                && self.actions.get(first..).is_some_and(page::cancels)
            {
                self.flush().await?;
                self.page
                    .reload_touches(self.store, contact_id, &self.settings, self.now)
                    .await?;
            }
        }
        self.flush().await?;
        Ok(self.report)
    }

    async fn drive(&mut self, mut enrollment: Enrollment) -> Result<(), RunnerError> {
        for _ in 0..MAX_ROUNDS {
            let due = enrollment.state.is_running()
                && enrollment.next_run_at.is_some_and(|at| at <= self.now);
            if !due {
                break;
            }
            match self.step(&enrollment).await? {
                Next::Again(next) => enrollment = next,
                Next::Done => break,
            }
        }
        Ok(())
    }

    async fn step(&mut self, e: &Enrollment) -> Result<Next, RunnerError> {
        // Status and failure policy are the sequence's, not a version's: read the latest.
        let latest = self.definitions.latest(e.sequence_id).await?;
        let sequence = self.definitions.for_enrollment(e).await?;
        let n = step_count(&sequence);
        match latest.status {
            SequenceStatus::Archived => {
                // Archiving stops every running enrollment; one enrolled in a race with
                // the archive is stopped here.
                let event = EnrollmentEvent::Stop {
                    reason: end_reasons::SEQUENCE_ARCHIVED.to_owned(),
                };
                return self.apply(e, n, &event, None, Count::Stopped);
            }
            // A queued step still resolves, and a paused enrollment still resumes at
            // its time (then it is held): neither loses what it waits for.
            SequenceStatus::Paused
                if matches!(
                    e.state,
                    EnrollmentState::Pending | EnrollmentState::Active | EnrollmentState::StepSent
                ) =>
            {
                return Ok(self.hold(e));
            }
            _ => {}
        }
        if e.state == EnrollmentState::StepPending {
            return self
                .step_pending(e, &sequence, latest.step_failure_policy)
                .await;
        }
        let contact = self.page.contact(e.contact_id)?;
        let tz = contact_time_zone(&contact, &self.settings);
        let now = self.now;
        let current = usize::try_from(e.current_step)
            .ok()
            .and_then(|k| sequence.steps.get(k));

        match (e.state, current) {
            (EnrollmentState::Pending, _) => {
                let first_due = match sequence.steps.first() {
                    Some(step) => match apply_delay(step.delay, tz, e.created_at) {
                        Ok(due) => next_allowed(step.window.as_ref(), tz, due),
                        // Only a stored delay past its maximum gets here: this
                        // enrollment is parked with the reason, the tick goes on.
                        Err(err) => return self.delay_failed(e, n, 0, err),
                    },
                    None => now,
                };
                let event = EnrollmentEvent::Start { first_due };
                self.apply(e, n, &event, None, Count::Started)
            }
            (EnrollmentState::Paused, _) => {
                let event = EnrollmentEvent::Resume { at: now };
                self.apply(e, n, &event, None, Count::Resumed)
            }
            (EnrollmentState::StepSent | EnrollmentState::Active, None) if e.current_step >= n => {
                self.apply(e, n, &EnrollmentEvent::Exhausted, None, Count::Exhausted)
            }
            (EnrollmentState::Active | EnrollmentState::StepSent, None) => {
                let problem = Problem {
                    action: "outreach.step_missing",
                    details: json!({ "step": e.current_step, "steps": n }),
                };
                self.park(e, n, problem)
            }
            (EnrollmentState::Active | EnrollmentState::StepSent, Some(step)) => {
                self.due_step(e, &sequence, step, &contact, tz).await
            }
            _ => Ok(Next::Done),
        }
    }

    /// A running enrollment whose current step is due: postpone, park or queue it.
    async fn due_step(
        &mut self,
        e: &Enrollment,
        sequence: &Sequence,
        step: &SequenceStep,
        contact: &Contact,
        tz: Tz,
    ) -> Result<Next, RunnerError> {
        let n = step_count(sequence);
        let now = self.now;
        let allowed = next_allowed(step.window.as_ref(), tz, now);
        if allowed > now {
            let event = EnrollmentEvent::Postpone { until: allowed };
            return self.apply(e, n, &event, None, Count::Postponed);
        }
        let touches = step.channel != Channel::ManualTask;
        if self.config.enforce_touch_limit && touches {
            let limit = u64::from(self.settings.daily_touch_limit);
            if self.page.touches(contact.id) >= limit {
                let tomorrow = start_of_next_day(tz, local_day(tz, now));
                let until = next_allowed(step.window.as_ref(), tz, tomorrow);
                let event = EnrollmentEvent::Postpone { until };
                return self.apply(e, n, &event, None, Count::Postponed);
            }
        }
        let message = match self.build_message(e, sequence, step, contact).await? {
            Ok(message) => message,
            Err(problem) => return self.park(e, n, problem),
        };
        let event = EnrollmentEvent::StepDue {
            step: e.current_step,
        };
        let next = self.apply(e, n, &event, Some(message), Count::Enqueued)?;
        if touches {
            // Queued now, due at once: a touch of today for the contact's later steps.
            self.page.queued(contact.id);
        }
        Ok(next)
    }

    /// Renders the step into an outbox message, or says why it cannot be.
    async fn build_message(
        &mut self,
        e: &Enrollment,
        sequence: &Sequence,
        step: &SequenceStep,
        contact: &Contact,
    ) -> Result<Result<OutboxMessage, Problem>, RunnerError> {
        let recipient = match (step.channel, contact_address(contact, step.channel)) {
            (Channel::ManualTask, _) => manual_task_recipient(contact.id),
            (_, Some(address)) => address,
            (channel, None) => {
                return Ok(Err(Problem {
                    action: "outreach.no_address",
                    details: json!({ "step": e.current_step, "channel": channel }),
                }));
            }
        };
        let account = self.account(contact).await?;
        let extra = extra_values(self.merge_values, self.workspace_id, contact).await;
        let booking_link = step_booking_link(step, &self.settings);
        let ctx = MergeContext::new(contact, account.as_ref())
            .with_extra(&extra)
            .with_booking_link(booking_link.as_deref());
        let rendered = render(&step.template.body, &ctx).and_then(|body| {
            let subject = step
                .template
                .subject
                .as_deref()
                .map(|s| render(s, &ctx))
                .transpose()?;
            Ok((subject, body))
        });
        let (subject, body) = match rendered {
            Ok(parts) => parts,
            Err(error) => return Ok(Err(render_problem(e.current_step, &error))),
        };
        let channel_meta = channel_metadata(
            self.store,
            self.workspace_id,
            step,
            contact.id,
            &ctx,
            booking_link.as_deref(),
        )
        .await?;
        let channel_meta = match channel_meta {
            Ok(meta) => meta,
            Err(error) => return Ok(Err(render_problem(e.current_step, &error))),
        };
        let key = step_idempotency_key(e, e.current_step);
        let mut metadata = json!({
            "requires_approval": step.requires_approval,
            "template_key": format!("{}:{}:{}", sequence.id, sequence.version, e.current_step),
            "sequence_id": sequence.id,
            "sequence_version": sequence.version,
            "context": {
                "sequence": sequence.name,
                "step": e.current_step + 1,
                "steps": sequence.steps.len(),
                "channel": step.channel,
            },
        });
        if let Some(object) = metadata.as_object_mut() {
            object.extend(channel_meta);
        }
        let message = OutboxMessage::new(
            self.workspace_id,
            step.channel,
            recipient,
            body,
            key,
            self.now,
        );
        let message = match message {
            Ok(m) => m,
            // A template that renders to blank text: treat like a missing field.
            Err(invalid) => {
                return Ok(Err(Problem {
                    action: "outreach.render_failed",
                    details: json!({ "step": e.current_step, "error": "invalid_message", "field": invalid.field() }),
                }));
            }
        };
        let mut message = message
            .with_enrollment(e.id, e.current_step)
            .with_contact(contact.id)
            .with_metadata(metadata);
        message.subject = subject;
        Ok(Ok(message))
    }

    async fn account(&mut self, contact: &Contact) -> Result<Option<Account>, StoreError> {
        let Some(account_id) = contact.account_id else {
            return Ok(None);
        };
        if let Some(known) = self.accounts.get(&account_id) {
            return Ok(known.clone());
        }
        let account = match self.store.get_account(self.workspace_id, account_id).await {
            Ok(account) => Some(account),
            Err(e) if e.kind() == StoreErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.accounts.insert(account_id, account.clone());
        Ok(account)
    }

    /// A step delay that cannot be scheduled (a stored delay past its maximum, written
    /// around validation): the enrollment is parked with the reason
    /// (`delay_out_of_range`, audited) and reported failed in the tick's report (also
    /// when the park is superseded); the pass goes on with the others.
    fn delay_failed(
        &mut self,
        e: &Enrollment,
        n: i32,
        step: i32,
        error: DelayOutOfRange,
    ) -> Result<Next, RunnerError> {
        let problem = Problem {
            action: "outreach.delay_out_of_range",
            details: json!({ "step": step, "reason": error.to_string() }),
        };
        tracing::warn!(
            workspace_id = %self.workspace_id,
            enrollment_id = %e.id,
            step,
            error = %error,
            "outreach runner: step delay cannot be scheduled; enrollment parked"
        );
        // Before the park: reported unless an earlier change of the enrollment lost.
        self.actions.push(Action::Fail(EnrollmentFailure {
            enrollment_id: e.id,
            error: RunnerError::Delay {
                step,
                source: error,
            },
        }));
        self.park(e, n, problem)
    }

    /// Pauses the enrollment without a resume time; once that is stored, records why in
    /// the audit trail.
    fn park(&mut self, e: &Enrollment, n: i32, problem: Problem) -> Result<Next, RunnerError> {
        let event = EnrollmentEvent::Pause { until: None };
        self.park_reason = Some(
            problem
                .action
                .strip_prefix("outreach.")
                .unwrap_or(problem.action),
        );
        self.apply(e, n, &event, None, Count::Parked)?;
        if let Some(Action::Write(planned)) = self.actions.last_mut() {
            planned.audit = Some(problem);
        }
        // A parked enrollment is not looked at again in this tick.
        Ok(Next::Done)
    }

    /// Plans `event` with compare-and-set on the version read. Returns `Again` with the
    /// row the change stores when it is applied.
    fn apply(
        &mut self,
        e: &Enrollment,
        n: i32,
        event: &EnrollmentEvent,
        enqueue: Option<OutboxMessage>,
        count: Count,
    ) -> Result<Next, RunnerError> {
        let mut t = transition(e, n, event)?;
        if let (Count::Parked, Some(reason)) = (count, self.park_reason.take()) {
            t.end_reason = Some(reason.to_owned());
        }
        let wants_enqueue = t
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::EnqueueStep { .. }));
        let enqueue = if wants_enqueue { enqueue } else { None };
        let mut next = t.applied_to(e, self.now);
        if let Some(message) = &enqueue {
            next.step_message_id = Some(message.id);
            // Looked at again if the message ends unsent and nothing else wakes it.
            next.next_run_at = Some(later(self.now, self.config.step_recheck));
        }
        let cancel = t.effects.contains(&Effect::CancelQueuedMessages);
        Ok(self.write(next, enqueue, cancel, count))
    }

    /// Plans storing `next` with compare-and-set on its version (the version read);
    /// answers the row it stores: the next version, updated now.
    fn write(
        &mut self,
        next: Enrollment,
        enqueue: Option<OutboxMessage>,
        cancel: bool,
        count: Count,
    ) -> Next {
        let cancel_queued =
            cancel.then(|| "outreach runner stopped or paused the enrollment".to_owned());
        let stored = Enrollment {
            version: next.version.saturating_add(1),
            updated_at: self.now,
            ..next.clone()
        };
        self.actions.push(Action::Write(Box::new(Planned {
            change: EnrollmentChange {
                enrollment: next,
                enqueue,
                cancel_queued,
                now: self.now,
            },
            count,
            audit: None,
        })));
        Next::Again(stored)
    }
}

/// `now + delay`, saturating instead of overflowing.
fn later(now: DateTime<Utc>, delay: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(delay.max(chrono::Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn render_problem(step: i32, error: &TemplateError) -> Problem {
    let (kind, field) = match error {
        TemplateError::MissingField { field } => ("missing_field", Some(field.as_str())),
        TemplateError::UnknownField { field } => ("unknown_field", Some(field.as_str())),
        TemplateError::Malformed { .. } => ("malformed", None),
    };
    Problem {
        action: "outreach.render_failed",
        details: json!({ "step": step, "error": kind, "field": field }),
    }
}
