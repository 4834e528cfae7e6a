//! The gates a claimed message passes before the quota and the send (stages 1 to 5 of
//! the module docs), and the helpers that end or postpone a message under its lease.

use std::sync::{Arc, PoisonError};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::decision::{enrollment_block, later, next_due, next_due_needs_time_zone};
use super::send::Sender;
use super::{Batch, Dispatcher, Outcome, WorkspaceState};
use crate::approval::{ApprovalDecision, ApprovalRequest, PolicyError};
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::ContactId;
use crate::model::{
    ApprovalItem, ApprovalStatus, ConsentStatus, Enrollment, OutboxMessage, OutboxStatus,
    SendWindow, Sequence,
};
use crate::outreach::approvals::context_of;
use crate::outreach::enrollment::{EnrollmentEvent, transition};
use crate::outreach::schedule::next_allowed;
use crate::store::{ApprovalStoreExt, ComplianceStoreExt, Inserted, Reschedule};

/// Why a message cannot be sent: every send records an activity about its contact.
const NO_CONTACT: &str = "outbox message has no contact: every send records a timeline activity \
                          about its contact, so a message needs contact_id";

/// What interrupted a message; its lease is left to expire.
#[derive(Debug, thiserror::Error)]
pub(super) enum Interrupt {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// What ended a message after the gates: its outcome, or an interruption.
pub(super) type Step<T> = Result<T, Interrupt>;

/// Why a message goes no further than a gate.
pub(super) enum Stop {
    /// It was dealt with there: cancelled, held, postponed, failed or dead-lettered.
    Settled(Outcome),
    /// A store or policy error interrupted it; its lease is left to expire.
    Interrupted(Interrupt),
}

impl From<Interrupt> for Stop {
    fn from(e: Interrupt) -> Self {
        Self::Interrupted(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Interrupted(e.into())
    }
}

impl From<PolicyError> for Stop {
    fn from(e: PolicyError) -> Self {
        Self::Interrupted(e.into())
    }
}

/// A gate's answer: `Ok` lets the message on to the next gate with what this one
/// found; `Err` says why it stops here. Gates chain with `?`.
pub(super) type Gate<T> = Result<T, Stop>;

/// What the policy's answer led to for one message.
pub(super) enum Decided {
    /// Approved with this text (`None`: the message's own body).
    Approved(Option<String>),
    /// Auto-approved: this approved item is stored (in one call for the batch), then
    /// the message goes on.
    Store(Box<ApprovalItem>),
}

/// Where a gate phase left a message: dealt with, or on to the next phase with `T`.
pub(super) enum Gated<T> {
    /// Dealt with (cancelled, held, postponed, failed, or interrupted).
    Done(Outcome),
    /// On to the next phase.
    Next(Box<T>),
}

impl<T> Gated<T> {
    /// The gated form of a phase's answer, logging an interruption.
    pub(super) fn of(message: &OutboxMessage, gate: Gate<T>) -> Self {
        match gate {
            Ok(next) => Self::Next(Box::new(next)),
            Err(Stop::Settled(outcome)) => Self::Done(settle(message, Ok(outcome))),
            Err(Stop::Interrupted(e)) => Self::Done(settle(message, Err(e))),
        }
    }
}

/// A message past stages 1 and 2 and the lookup of its approval item.
pub(super) struct Screened<'a> {
    pub(super) attempt: SendAttempt<'a>,
    contact_id: ContactId,
    enrollment: Option<Enrollment>,
    /// The approved text (`Some(None)`: the message's own body) once an item
    /// decided it; `None` while the policy must be asked (stage 3, batched).
    pub(super) approved: Option<Option<String>>,
}

/// A message cleared by every gate.
pub(super) struct Ready<'a> {
    pub(super) attempt: SendAttempt<'a>,
    pub(super) contact_id: ContactId,
    /// The approved text when it differs from the message's body.
    pub(super) body: Option<String>,
    pub(super) plan: Option<StepPlan>,
    pub(super) sender: Sender,
}

/// What is needed to move the enrollment on once its step was sent.
pub(super) struct StepPlan {
    enrollment: Enrollment,
    sequence: Arc<Sequence>,
    step: i32,
    tz: Tz,
}

impl StepPlan {
    /// The contact's zone the plan was made in.
    pub(super) fn tz(&self) -> Tz {
        self.tz
    }

    /// The step's send window, if it has one.
    pub(super) fn window(&self) -> Option<&SendWindow> {
        usize::try_from(self.step)
            .ok()
            .and_then(|k| self.sequence.steps.get(k))
            .and_then(|s| s.window.as_ref())
    }

    /// The enrollment after `StepSent`, or `None` (logged) if the transition does not
    /// apply; the send is recorded either way.
    pub(super) fn advance(&self, sent_at: DateTime<Utc>) -> Option<Enrollment> {
        let next_due = next_due(&self.sequence, self.step, self.tz, sent_at)?;
        let steps = i32::try_from(self.sequence.steps.len()).unwrap_or(i32::MAX);
        let event = EnrollmentEvent::StepSent {
            step: self.step,
            next_due,
        };
        match transition(&self.enrollment, steps, &event) {
            Ok(t) => Some(t.applied_to(&self.enrollment, sent_at)),
            Err(e) => {
                tracing::warn!(enrollment_id = %self.enrollment.id, error = %e, "enrollment not advanced");
                None
            }
        }
    }
}

/// One claimed message on its way through the gates and the send, under its lease.
pub(super) struct SendAttempt<'a> {
    pub(super) d: &'a Dispatcher,
    batch: &'a Batch,
    pub(super) ws: &'a WorkspaceState,
    pub(super) message: &'a OutboxMessage,
    pub(super) token: i64,
    pub(super) now: DateTime<Utc>,
}

/// The outcome of a step, logging an interruption (ids only).
pub(super) fn settle(message: &OutboxMessage, step: Step<Outcome>) -> Outcome {
    let outcome = match step {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(
                outbox_id = %message.id,
                workspace_id = %message.workspace_id,
                error = %e,
                "outbox message interrupted; its lease is left to expire"
            );
            Outcome::LeftToExpire
        }
    };
    tracing::debug!(outbox_id = %message.id, ?outcome, "outbox message processed");
    outcome
}

impl Dispatcher {
    /// Takes one claimed message through stages 1 and 2 and looks up its approval
    /// item; never fails, never panics.
    pub(super) async fn screen<'a>(
        &'a self,
        batch: &'a Batch,
        message: &'a OutboxMessage,
    ) -> Gated<Screened<'a>> {
        let Some(token) = message.lease.as_ref().map(|l| l.token) else {
            tracing::warn!(outbox_id = %message.id, "claimed message carries no lease");
            return Gated::Done(Outcome::LeftToExpire);
        };
        let Some(Some(ws)) = batch.workspaces.get(&message.workspace_id) else {
            return Gated::Done(Outcome::LeftToExpire);
        };
        let attempt = SendAttempt {
            d: self,
            batch,
            ws,
            message,
            token,
            now: self.clock.now(),
        };
        Gated::of(message, attempt.screen().await)
    }
}

impl<'a> SendAttempt<'a> {
    /// Stages 1 and 2, then the approval item if there is one; each gate either lets
    /// the message on (`Ok`) or [`Stop`]s it there.
    async fn screen(self) -> Gate<Screened<'a>> {
        let contact_id = self.contact().await?;
        self.within_attempt_budget().await?;
        let enrollment = self.enrollment().await?;
        // Before the approval: nobody is asked to approve a send to an address that
        // opted out.
        self.compliance(contact_id).await?;
        let approved = match self.existing_item().await? {
            Some(item) => Some(self.follow(&item).await?),
            None => None,
        };
        Ok(Screened {
            attempt: self,
            contact_id,
            enrollment,
            approved,
        })
    }
}

impl<'a> Screened<'a> {
    /// Stages 4 and 5 and who sends, for a message its approval let go with `body`.
    pub(super) async fn clear(self, body: Option<String>) -> Gate<Ready<'a>> {
        let attempt = self.attempt;
        attempt.allowlist().await?;
        attempt.channel_open().await?;
        let plan = match self.enrollment {
            Some(enrollment) => Some(attempt.plan(enrollment).await?),
            None => None,
        };
        if let Some(plan) = &plan {
            attempt.within_window(plan).await?;
        }
        let sender = attempt.sender().await?;
        Ok(Ready {
            attempt,
            contact_id: self.contact_id,
            body,
            plan,
            sender,
        })
    }
}

impl<'a> SendAttempt<'a> {
    /// Stage 1: the contact every send records its activity about; a message without
    /// one fails.
    async fn contact(&self) -> Gate<ContactId> {
        match self.message.contact_id {
            Some(contact_id) => Ok(contact_id),
            None => self.stop(OutboxStatus::Failed, NO_CONTACT).await,
        }
    }

    /// Stage 1: a message claimed more often than the attempt budget is dead-lettered.
    async fn within_attempt_budget(&self) -> Gate<()> {
        let m = self.message;
        let max = self.d.config.max_attempts();
        if u32::try_from(m.attempts).unwrap_or(0) > max {
            let reason = format!(
                "claimed {} times without completing; the budget is {max} attempts",
                m.attempts
            );
            return self.stop(OutboxStatus::DeadLettered, &reason).await;
        }
        Ok(())
    }

    /// Stage 1: the message's enrollment, if it has one, still waiting for this step.
    async fn enrollment(&self) -> Gate<Option<Enrollment>> {
        let m = self.message;
        let Some(id) = m.enrollment_id else {
            return Ok(None);
        };
        match self.d.store.get_enrollment(m.workspace_id, id).await {
            Ok(enrollment) => match enrollment_block(&enrollment, m.step_index) {
                Some(reason) => self.stop(OutboxStatus::Cancelled, &reason).await,
                None => Ok(Some(enrollment)),
            },
            Err(e) if e.kind() == StoreErrorKind::NotFound => {
                let reason = "enrollment no longer exists";
                self.stop(OutboxStatus::Cancelled, reason).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stage 3, first half: the message's approval item, if it has one.
    async fn existing_item(&self) -> Gate<Option<ApprovalItem>> {
        let m = self.message;
        Ok(match self.batch.prefetched.get(&m.id) {
            Some(read) => read.approval.clone(),
            None => {
                self.d
                    .store
                    .find_approval_for_outbox(m.workspace_id, m.id)
                    .await?
            }
        })
    }

    /// Stage 3 for the policy's answer (see [`super::approve`]): an auto-approval
    /// gives the approved item to store; a rejection cancels; "a human decides" parks
    /// the message with a pending item (or follows the item that appeared meanwhile).
    pub(super) async fn on_decision(
        &self,
        request: &ApprovalRequest,
        decision: Result<ApprovalDecision, PolicyError>,
    ) -> Gate<Decided> {
        let reason = match decision? {
            ApprovalDecision::AutoApprove { rule } => {
                let mut item = self.new_item(request).await?;
                item.status = ApprovalStatus::Approved;
                item.decided_by_rule = Some(rule);
                item.decided_at = Some(self.now);
                return Ok(Decided::Store(Box::new(item)));
            }
            ApprovalDecision::Reject { reason } => {
                let reason = format!("rejected by the approval policy: {reason}");
                return self.stop(OutboxStatus::Cancelled, &reason).await;
            }
            ApprovalDecision::RequireHuman { reason } => reason,
        };
        let mut item = self.new_item(request).await?;
        item.reason = Some(reason);
        Ok(Decided::Approved(self.park(&item).await?))
    }

    /// Stage 3 after the auto-approved item was stored (or an existing one found).
    pub(super) async fn on_stored(
        &self,
        inserted: &Inserted<ApprovalItem>,
    ) -> Gate<Option<String>> {
        if inserted.created {
            return Ok(None);
        }
        self.follow(&inserted.value).await
    }

    /// Acts on an existing approval item.
    async fn follow(&self, item: &ApprovalItem) -> Gate<Option<String>> {
        if item.status == ApprovalStatus::Pending {
            return self.park(item).await;
        }
        self.decided(item).await
    }

    /// Stores `item` (or finds the message's existing one) and parks the message in the
    /// same atomic step: an approver can act the moment the item is visible, since its
    /// message is no longer in flight. The approver is notified of a new item only.
    async fn park(&self, item: &ApprovalItem) -> Gate<Option<String>> {
        let m = self.message;
        let held = self
            .d
            .store
            .hold_outbox_for_approval(m.workspace_id, m.id, self.token, item, self.now)
            .await?;
        if held.message.status != OutboxStatus::AwaitingApproval {
            // The message already had an item, decided by now: the store left the
            // message in flight under our lease for the decision to be carried out.
            return self.decided(&held.item.value).await;
        }
        if held.item.created
            && let Some(notifier) = &self.d.notifier
            && let Err(e) = notifier.approval_needed(&held.item.value).await
        {
            tracing::warn!(
                approval_id = %held.item.value.id,
                error = %e,
                "approval notification failed; the item stays in the inbox"
            );
        }
        Err(Stop::Settled(Outcome::HeldForApproval))
    }

    /// Carries out a decided item: the approved text goes on, anything else cancels.
    async fn decided(&self, item: &ApprovalItem) -> Gate<Option<String>> {
        let m = self.message;
        let reason = match item.status {
            ApprovalStatus::Approved => {
                let body = item.body_to_send();
                return Ok((body != m.body).then(|| body.to_owned()));
            }
            ApprovalStatus::Pending => {
                // The store parks the message whenever its item is pending, so a
                // pending item here broke that contract: leave the lease to expire
                // and let a later claim look again.
                return Err(StoreError::conflict(
                    "approval_item",
                    "the store left a message in flight beside a pending item",
                )
                .into());
            }
            ApprovalStatus::Rejected => match &item.reason {
                Some(why) => format!("approval rejected: {why}"),
                None => "approval rejected".to_owned(),
            },
            ApprovalStatus::Expired => "approval expired".to_owned(),
            ApprovalStatus::Withdrawn => match &item.reason {
                Some(why) => format!("approval withdrawn: {why}"),
                None => "approval withdrawn".to_owned(),
            },
        };
        self.stop(OutboxStatus::Cancelled, &reason).await
    }

    /// A pending item for the message, carrying what the approver needs; the message
    /// fails if the item cannot be made.
    async fn new_item(&self, request: &ApprovalRequest) -> Gate<ApprovalItem> {
        let m = self.message;
        let expires_at = later(self.now, self.d.config.approval_ttl());
        let item = ApprovalItem::pending(
            m.workspace_id,
            m.id,
            m.channel,
            m.body.clone(),
            self.now,
            expires_at,
        );
        let mut item = match item {
            Ok(item) => item,
            Err(e) => {
                let reason = format!("cannot create its approval item: {e}");
                return self.stop(OutboxStatus::Failed, &reason).await;
            }
        };
        item.confidence = request.confidence;
        item.template_key.clone_from(&request.template_key);
        item.step_index = m.step_index;
        item.context = context_of(m);
        Ok(item)
    }

    /// Stage 2: a suppression of the address, or consent withdrawn for the channel,
    /// cancels the message.
    async fn compliance(&self, contact_id: ContactId) -> Gate<()> {
        let m = self.message;
        let store = &self.d.store;
        let (suppression, consent) = match self.batch.prefetched.get(&m.id) {
            Some(read) => (read.suppression.clone(), read.consent.clone()),
            None => {
                futures::future::try_join(
                    store.find_suppression(m.workspace_id, m.channel, &m.recipient),
                    store.current_consent(m.workspace_id, contact_id, m.channel),
                )
                .await?
            }
        };
        if let Some(s) = suppression {
            let reason = format!("recipient is suppressed ({})", s.reason);
            return self.stop(OutboxStatus::Cancelled, &reason).await;
        }
        if consent.is_some_and(|c| c.status == ConsentStatus::Withdrawn) {
            let reason = format!("contact withdrew consent for {}", m.channel);
            return self.stop(OutboxStatus::Cancelled, &reason).await;
        }
        Ok(())
    }

    /// Stage 4 (dry-run too): a recipient not on the workspace's allowlist cancels the
    /// message.
    async fn allowlist(&self) -> Gate<()> {
        if let Some(list) = &self.ws.settings.allowlist
            && !list.allows(&self.message.recipient)
        {
            let reason = "recipient not on the allowlist";
            return self.stop(OutboxStatus::Cancelled, reason).await;
        }
        Ok(())
    }

    /// Stage 5: a channel paused by a send-health anomaly postpones the message.
    async fn channel_open(&self) -> Gate<()> {
        let channel = self.message.channel;
        if self.ws.paused.contains(&channel) {
            let until = later(self.now, self.d.config.pause_delay());
            let reason = format!("{channel} is paused by an open send-health anomaly");
            return Err(Stop::Settled(self.postpone(until, &reason).await?));
        }
        Ok(())
    }

    /// Reads what moving the enrollment on needs; the message fails if the sequence
    /// version is gone.
    async fn plan(&self, enrollment: Enrollment) -> Gate<StepPlan> {
        let ws = self.message.workspace_id;
        let key = (enrollment.sequence_id, enrollment.sequence_version);
        let cached = self
            .batch
            .sequences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let sequence = match cached {
            Some(sequence) => sequence,
            None => match self.d.store.get_sequence_version(ws, key.0, key.1).await {
                Ok(sequence) => {
                    let sequence = Arc::new(sequence);
                    self.batch
                        .sequences
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, sequence.clone());
                    sequence
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    let reason = format!("sequence {} has no version {}", key.0, key.1);
                    return self.stop(OutboxStatus::Failed, &reason).await;
                }
                Err(e) => return Err(e.into()),
            },
        };
        let step = enrollment.current_step;
        let mut tz = self.ws.settings.default_time_zone;
        let windowed = usize::try_from(step)
            .ok()
            .and_then(|k| sequence.steps.get(k))
            .is_some_and(|s| s.window.is_some());
        if windowed || next_due_needs_time_zone(&sequence, step) {
            match self.d.store.get_contact(ws, enrollment.contact_id).await {
                Ok(contact) => tz = contact.time_zone.unwrap_or(tz),
                Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(StepPlan {
            enrollment,
            sequence,
            step,
            tz,
        })
    }

    /// A step's message goes only inside the step's send window in the contact's zone,
    /// however it got here (a late approval, a retry, a restart): outside it, the
    /// message waits for the window's next opening.
    async fn within_window(&self, plan: &StepPlan) -> Gate<()> {
        let window = usize::try_from(plan.step)
            .ok()
            .and_then(|k| plan.sequence.steps.get(k))
            .and_then(|s| s.window.as_ref());
        let opens = next_allowed(window, plan.tz, self.now);
        if opens > self.now {
            let reason = "outside the step's send window";
            return Err(Stop::Settled(self.postpone(opens, reason).await?));
        }
        Ok(())
    }

    /// Ends the message as `status` with `reason` and stops it at this gate.
    async fn stop<T>(&self, status: OutboxStatus, reason: &str) -> Gate<T> {
        Err(Stop::Settled(self.finish(status, reason).await?))
    }

    /// Puts the message back until `until`, giving the attempt back.
    pub(super) async fn postpone(&self, until: DateTime<Utc>, reason: &str) -> Step<Outcome> {
        let m = self.message;
        let reschedule = Reschedule {
            not_before: until.max(self.now),
            reason: Some(reason.to_owned()),
            count_attempt: false,
        };
        self.d
            .store
            .reschedule_outbox(m.workspace_id, m.id, self.token, &reschedule)
            .await?;
        Ok(Outcome::Postponed)
    }

    /// Ends the message as `status` with `reason`.
    pub(super) async fn finish(&self, status: OutboxStatus, reason: &str) -> Step<Outcome> {
        let m = self.message;
        self.d
            .store
            .finish_outbox(m.workspace_id, m.id, self.token, status, reason, self.now)
            .await?;
        Ok(match status {
            OutboxStatus::Failed => Outcome::Failed,
            OutboxStatus::DeadLettered => Outcome::DeadLettered,
            _ => Outcome::Cancelled,
        })
    }
}
