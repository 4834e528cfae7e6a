//! The gates a claimed message passes before the quota and the send (stages 1 to 5 of
//! the module docs), and the helpers that end or postpone a message under its lease.

use std::sync::{Arc, PoisonError};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::decision::{
    enrollment_block, later, missing_adapter, next_due, next_due_needs_time_zone,
};
use super::{Batch, Dispatcher, Outcome, WorkspaceState};
use crate::approval::{ApprovalDecision, ApprovalRequest, PolicyError};
use crate::channel::ChannelAdapter;
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::ContactId;
use crate::model::{
    ApprovalItem, ApprovalStatus, ConsentStatus, Enrollment, OutboxMessage, OutboxStatus, Sequence,
};
use crate::outreach::approvals::{approval_request, context_of};
use crate::outreach::enrollment::{EnrollmentEvent, transition};
use crate::store::{ApprovalStoreExt, ComplianceStoreExt, Reschedule};

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

pub(super) type Step<T> = Result<T, Interrupt>;

/// Where the gates left a message.
pub(super) enum Gated<'a> {
    /// Dealt with (cancelled, held, postponed, failed, or interrupted).
    Done(Outcome),
    /// Cleared for the quota and the send.
    Ready(Box<Ready<'a>>),
}

/// A message cleared by every gate.
pub(super) struct Ready<'a> {
    pub(super) job: Job<'a>,
    pub(super) contact_id: ContactId,
    /// The approved text when it differs from the message's body.
    pub(super) body: Option<String>,
    pub(super) plan: Option<StepPlan>,
    pub(super) sender: Sender<'a>,
}

/// Who receives the message.
pub(super) enum Sender<'a> {
    DryRun,
    Adapter(&'a Arc<dyn ChannelAdapter>),
}

/// What is needed to move the enrollment on once its step was sent.
pub(super) struct StepPlan {
    enrollment: Enrollment,
    sequence: Arc<Sequence>,
    step: i32,
    tz: Tz,
}

impl StepPlan {
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

/// One claimed message under its lease.
pub(super) struct Job<'a> {
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
    /// Takes one claimed message through the gates; never fails, never panics.
    pub(super) async fn gate<'a>(
        &'a self,
        batch: &'a Batch,
        message: &'a OutboxMessage,
    ) -> Gated<'a> {
        let Some(token) = message.lease.as_ref().map(|l| l.token) else {
            tracing::warn!(outbox_id = %message.id, "claimed message carries no lease");
            return Gated::Done(Outcome::LeftToExpire);
        };
        let Some(Some(ws)) = batch.workspaces.get(&message.workspace_id) else {
            return Gated::Done(Outcome::LeftToExpire);
        };
        let job = Job {
            d: self,
            batch,
            ws,
            message,
            token,
            now: self.clock.now(),
        };
        match job.gates().await {
            Ok(Ok(ready)) => Gated::Ready(Box::new(ready)),
            Ok(Err(outcome)) => Gated::Done(settle(message, Ok(outcome))),
            Err(e) => Gated::Done(settle(message, Err(e))),
        }
    }
}

impl<'a> Job<'a> {
    /// Stages 1 to 5; `Ok(Err(outcome))` when the message is dealt with.
    async fn gates(self) -> Step<Result<Ready<'a>, Outcome>> {
        let m = self.message;
        let Some(contact_id) = m.contact_id else {
            return self.finish(OutboxStatus::Failed, NO_CONTACT).await.map(Err);
        };
        let max = self.d.config.max_attempts();
        if u32::try_from(m.attempts).unwrap_or(0) > max {
            let reason = format!(
                "claimed {} times without completing; the budget is {max} attempts",
                m.attempts
            );
            return self
                .finish(OutboxStatus::DeadLettered, &reason)
                .await
                .map(Err);
        }
        let enrollment = match m.enrollment_id {
            None => None,
            Some(id) => match self.d.store.get_enrollment(m.workspace_id, id).await {
                Ok(e) => match enrollment_block(&e, m.step_index) {
                    Some(reason) => {
                        return self.finish(OutboxStatus::Cancelled, &reason).await.map(Err);
                    }
                    None => Some(e),
                },
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    let reason = "enrollment no longer exists";
                    return self.finish(OutboxStatus::Cancelled, reason).await.map(Err);
                }
                Err(e) => return Err(e.into()),
            },
        };
        let body = match self.approval().await? {
            Ok(body) => body,
            Err(outcome) => return Ok(Err(outcome)),
        };
        if let Some(reason) = self.compliance(contact_id).await? {
            return self.finish(OutboxStatus::Cancelled, &reason).await.map(Err);
        }
        if let Some(list) = &self.ws.settings.allowlist
            && !list.allows(&m.recipient)
        {
            let reason = "recipient not on the allowlist";
            return self.finish(OutboxStatus::Cancelled, reason).await.map(Err);
        }
        if self.ws.paused.contains(&m.channel) {
            let until = later(self.now, self.d.config.pause_delay());
            let reason = format!("{} is paused by an open send-health anomaly", m.channel);
            return self.postpone(until, &reason).await.map(Err);
        }
        let plan = match enrollment {
            None => None,
            Some(e) => match self.plan(e).await? {
                Ok(plan) => Some(plan),
                Err(reason) => return self.finish(OutboxStatus::Failed, &reason).await.map(Err),
            },
        };
        let sender = if self.ws.dry_run {
            Sender::DryRun
        } else {
            match self.d.channels.get(m.channel) {
                Some(adapter) => Sender::Adapter(adapter),
                None => return self.on_error(&missing_adapter(m.channel)).await.map(Err),
            }
        };
        Ok(Ok(Ready {
            job: self,
            contact_id,
            body,
            plan,
            sender,
        }))
    }

    /// Stage 2: the approval item, or the policy when there is none. `Ok(body)` clears
    /// the message (with the approved text when it differs).
    async fn approval(&self) -> Step<Result<Option<String>, Outcome>> {
        let m = self.message;
        let store = &self.d.store;
        let found = match self.batch.prefetched.get(&m.id) {
            Some(read) => read.approval.clone(),
            None => store.find_approval_for_outbox(m.workspace_id, m.id).await?,
        };
        if let Some(item) = found {
            return self.follow(&item).await;
        }
        let request = approval_request(m, self.now);
        let reason = match self.d.policy.decide(&request).await? {
            ApprovalDecision::AutoApprove { rule } => {
                let mut item = match self.new_item(&request) {
                    Ok(item) => item,
                    Err(reason) => {
                        return self.finish(OutboxStatus::Failed, &reason).await.map(Err);
                    }
                };
                item.status = ApprovalStatus::Approved;
                item.decided_by_rule = Some(rule);
                item.decided_at = Some(self.now);
                let inserted = store.insert_approval(&item).await?;
                if inserted.created {
                    return Ok(Ok(None));
                }
                return self.follow(&inserted.value).await;
            }
            ApprovalDecision::Reject { reason } => {
                let reason = format!("rejected by the approval policy: {reason}");
                return self.finish(OutboxStatus::Cancelled, &reason).await.map(Err);
            }
            ApprovalDecision::RequireHuman { reason } => reason,
        };
        let mut item = match self.new_item(&request) {
            Ok(item) => item,
            Err(reason) => return self.finish(OutboxStatus::Failed, &reason).await.map(Err),
        };
        item.reason = Some(reason);
        let inserted = store.insert_approval(&item).await?;
        if !inserted.created {
            return self.follow(&inserted.value).await;
        }
        store
            .hold_outbox_for_approval(m.workspace_id, m.id, self.token, self.now)
            .await?;
        if let Some(notifier) = &self.d.notifier
            && let Err(e) = notifier.approval_needed(&inserted.value).await
        {
            tracing::warn!(
                approval_id = %inserted.value.id,
                error = %e,
                "approval notification failed; the item stays in the inbox"
            );
        }
        Ok(Err(Outcome::HeldForApproval))
    }

    /// Acts on an existing approval item.
    async fn follow(&self, item: &ApprovalItem) -> Step<Result<Option<String>, Outcome>> {
        let m = self.message;
        let reason = match item.status {
            ApprovalStatus::Approved => {
                let body = item.body_to_send();
                return Ok(Ok((body != m.body).then(|| body.to_owned())));
            }
            ApprovalStatus::Pending => {
                self.d
                    .store
                    .hold_outbox_for_approval(m.workspace_id, m.id, self.token, self.now)
                    .await?;
                return Ok(Err(Outcome::HeldForApproval));
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
        self.finish(OutboxStatus::Cancelled, &reason).await.map(Err)
    }

    /// A pending item for the message, carrying what the approver needs.
    fn new_item(&self, request: &ApprovalRequest) -> Result<ApprovalItem, String> {
        let m = self.message;
        let expires_at = later(self.now, self.d.config.approval_ttl());
        let mut item = ApprovalItem::pending(
            m.workspace_id,
            m.id,
            m.channel,
            m.body.clone(),
            self.now,
            expires_at,
        )
        .map_err(|e| format!("cannot create its approval item: {e}"))?;
        item.confidence = request.confidence;
        item.template_key.clone_from(&request.template_key);
        item.step_index = m.step_index;
        item.context = context_of(m);
        Ok(item)
    }

    /// Stage 3: why suppression or consent forbids the send, if they do.
    async fn compliance(&self, contact_id: ContactId) -> Step<Option<String>> {
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
            return Ok(Some(format!("recipient is suppressed ({})", s.reason)));
        }
        if consent.is_some_and(|c| c.status == ConsentStatus::Withdrawn) {
            return Ok(Some(format!("contact withdrew consent for {}", m.channel)));
        }
        Ok(None)
    }

    /// Reads what moving the enrollment on needs; `Err(reason)` if the sequence
    /// version is gone (the message then fails).
    async fn plan(&self, enrollment: Enrollment) -> Step<Result<StepPlan, String>> {
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
                    return Ok(Err(format!("sequence {} has no version {}", key.0, key.1)));
                }
                Err(e) => return Err(e.into()),
            },
        };
        let step = enrollment.current_step;
        let mut tz = self.ws.settings.default_time_zone;
        if next_due_needs_time_zone(&sequence, step) {
            match self.d.store.get_contact(ws, enrollment.contact_id).await {
                Ok(contact) => tz = contact.time_zone.unwrap_or(tz),
                Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ok(StepPlan {
            enrollment,
            sequence,
            step,
            tz,
        }))
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
            .finish_outbox(m.workspace_id, m.id, self.token, status, reason)
            .await?;
        Ok(match status {
            OutboxStatus::Failed => Outcome::Failed,
            OutboxStatus::DeadLettered => Outcome::DeadLettered,
            _ => Outcome::Cancelled,
        })
    }
}
