//! Who sends a message (the last gate), then stages 6 and 7: the send gate
//! ([`begin_sends`](crate::store::OutboxStore::begin_sends), one store call per wave),
//! then the send and what follows from its result.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::backoff::jitter_fraction;
use super::decision::{FailureAction, RetryPolicy, later, on_channel_error};
use super::pipeline::{Gate, Ready, SendAttempt, Step, StepPlan, Stop, settle};
use super::{Dispatcher, Outcome};
use crate::channel::{
    ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage, SendReceipt,
};
use crate::error::StoreError;
use chrono_tz::Tz;

use crate::ids::ContactId;
use crate::model::{
    Activity, ActivityKind, Channel, OutboxMessage, OutboxStatus, Suppression, SuppressionReason,
    normalize_address,
};
use crate::outreach::schedule::{local_day, next_allowed, start_of_next_day};
use crate::store::{
    QuotaKey, Reschedule, SendStart, SendStartOutcome, SentMark, SentRecord, TouchLimit,
};

/// Who sends a cleared message.
pub(super) enum Sender {
    /// The dispatcher's dry-run adapter.
    DryRun,
    /// The adapter the resolver gave for the message's workspace and channel.
    Adapter(Arc<dyn ChannelAdapter>),
}

/// The span of one message's send: ids, channel and attempt only, never addresses or
/// content.
fn send_span(message: &OutboxMessage) -> tracing::Span {
    tracing::info_span!(
        "outbox.send",
        workspace_id = %message.workspace_id,
        outbox_id = %message.id,
        channel = message.channel.as_str(),
        attempt = message.attempts,
    )
}

/// A wave's messages split into those the gate let go and the outcomes of the rest.
pub(super) struct Allotted<'a> {
    pub(super) go: Vec<Ready<'a>>,
    pub(super) outcomes: Vec<Outcome>,
}

impl Ready<'_> {
    /// What [`begin_sends`](crate::store::OutboxStore::begin_sends) checks for this
    /// message: its quota key of the workspace's local day, its cap, and for a
    /// sequence step (not a manual task) the touch limit of the contact's local day.
    /// Messages without an enrollment (one-off sends the host enqueued) are not held
    /// to the touch limit, as the runner holds only steps to it; they count as
    /// touches once sending or sent.
    fn start(&self) -> SendStart {
        let a = &self.attempt;
        let m = a.message;
        let settings = &a.ws.settings;
        let tz = self.contact_tz(settings.default_time_zone);
        let touch_limit = (self.plan.is_some() && m.channel != Channel::ManualTask).then(|| {
            let day = local_day(tz, a.now);
            TouchLimit {
                limit: settings.daily_touch_limit,
                day_start: day
                    .pred_opt()
                    .map_or(a.now, |yesterday| start_of_next_day(tz, yesterday)),
                day_end: start_of_next_day(tz, day),
            }
        });
        SendStart {
            workspace_id: m.workspace_id,
            outbox_id: m.id,
            lease_token: a.token,
            contact_id: self.contact_id,
            channel: m.channel,
            recipient: normalize_address(&m.recipient),
            quota_key: a.quota_key(),
            cap: settings.daily_cap(m.channel),
            touch_limit,
        }
    }

    /// The contact's zone as the step plan knows it, else the workspace's.
    fn contact_tz(&self, workspace_tz: Tz) -> Tz {
        self.plan.as_ref().map_or(workspace_tz, StepPlan::tz)
    }

    /// Postpones a message the gate refused for the day: to the earliest instant on or
    /// after `from` inside its step's send window in the contact's zone (no window
    /// without an enrollment), its attempt given back.
    async fn wait_for(&self, from: DateTime<Utc>, reason: &str) -> Outcome {
        let tz = self.contact_tz(self.attempt.ws.settings.default_time_zone);
        let window = self.plan.as_ref().and_then(StepPlan::window);
        let until = next_allowed(window, tz, from);
        settle(
            self.attempt.message,
            self.attempt.postpone(until, reason).await,
        )
    }

    /// Acts on a refusal of the gate.
    async fn refused(&self, outcome: &SendStartOutcome) -> Outcome {
        let a = &self.attempt;
        let m = a.message;
        match outcome {
            SendStartOutcome::OverCap => {
                let tz = a.ws.settings.default_time_zone;
                let next_day = start_of_next_day(tz, local_day(tz, a.now));
                let cap = a.ws.settings.daily_cap(m.channel);
                let reason = format!("daily {} quota of {cap} exhausted", m.channel);
                self.wait_for(next_day, &reason).await
            }
            SendStartOutcome::TouchLimit => {
                let tz = self.contact_tz(a.ws.settings.default_time_zone);
                let next_day = start_of_next_day(tz, local_day(tz, a.now));
                let reason = "the contact's daily touch limit is reached";
                self.wait_for(next_day, reason).await
            }
            // The store cancelled it (suppressed, consent withdrawn), or an
            // unsubscribe did before the gate.
            SendStartOutcome::Suppressed { .. }
            | SendStartOutcome::ConsentWithdrawn
            | SendStartOutcome::NotInFlight => Outcome::Cancelled,
            _ => Outcome::LeftToExpire,
        }
    }
}

impl Dispatcher {
    /// Asks the send gate for one wave of cleared messages (in the cap's fairness
    /// order, see the module docs) with one store call: the messages it lets go are
    /// sent, the refused ones postponed or counted as cancelled.
    pub(super) async fn allot<'a>(&self, wave: Vec<Ready<'a>>, now: DateTime<Utc>) -> Allotted<'a> {
        let starts: Vec<SendStart> = wave.iter().map(Ready::start).collect();
        let mut allotted = Allotted {
            go: Vec::new(),
            outcomes: Vec::new(),
        };
        let answers = match self.store.begin_sends(&starts, now).await {
            Ok(answers) if answers.len() == wave.len() => answers,
            Ok(_) | Err(_) => {
                tracing::warn!(
                    messages = wave.len(),
                    "the send gate failed; the messages are left to expire"
                );
                allotted
                    .outcomes
                    .extend(wave.iter().map(|_| Outcome::LeftToExpire));
                return allotted;
            }
        };
        let mut refused = Vec::new();
        for (ready, answer) in wave.into_iter().zip(answers) {
            if answer.is_go() {
                allotted.go.push(ready);
            } else {
                refused.push((ready, answer));
            }
        }
        let waits =
            futures::future::join_all(refused.iter().map(|(r, answer)| r.refused(answer))).await;
        allotted.outcomes.extend(waits);
        allotted
    }

    /// Stage 7 for one wave the gate let go: every send at once, then the accepted
    /// ones recorded with one
    /// [`mark_outbox_sent_many`](crate::store::OutboxStore::mark_outbox_sent_many).
    pub(super) async fn send_wave(&self, go: Vec<Ready<'_>>) -> Vec<Outcome> {
        let delivered = futures::future::join_all(go.into_iter().map(|r| self.deliver(r))).await;
        let mut outcomes = Vec::with_capacity(delivered.len());
        let mut marks = Vec::with_capacity(delivered.len());
        for d in delivered {
            match d {
                Delivered::Done(outcome) => outcomes.push(outcome),
                Delivered::Accepted(mark) => marks.push(*mark),
            }
        }
        if marks.is_empty() {
            return outcomes;
        }
        let recorded = match self.store.mark_outbox_sent_many(&marks).await {
            Ok(recorded) if recorded.len() == marks.len() => recorded,
            Ok(_) | Err(_) => {
                // One record the store refuses must not hold back the others: each
                // is recorded on its own.
                tracing::warn!(
                    messages = marks.len(),
                    "recording a wave of sends failed; recording them one by one"
                );
                futures::future::join_all(marks.iter().map(|m| {
                    self.store
                        .mark_outbox_sent(m.workspace_id, m.id, m.lease_token, &m.sent)
                }))
                .await
            }
        };
        for (mark, result) in marks.iter().zip(recorded) {
            outcomes.push(match result {
                Ok(_) => Outcome::Sent,
                Err(e) => {
                    tracing::error!(
                        outbox_id = %mark.id,
                        error = %e,
                        "provider accepted the message but recording it failed; a later claim \
                         re-sends it under the same idempotency key"
                    );
                    Outcome::LeftToExpire
                }
            });
        }
        outcomes
    }

    /// The send of one message within its quota, in its own span.
    async fn deliver(&self, ready: Ready<'_>) -> Delivered {
        let message = ready.attempt.message;
        let span = send_span(message);
        async move {
            match ready.send().await {
                Ok(delivered) => delivered,
                Err(e) => Delivered::Done(settle(message, Err(e))),
            }
        }
        .instrument(span)
        .await
    }
}

/// What one send came to.
enum Delivered {
    /// Dealt with: retried, failed, or interrupted.
    Done(Outcome),
    /// The provider accepted it: to be recorded with the wave.
    Accepted(Box<SentMark>),
}

impl Ready<'_> {
    async fn send(self) -> Step<Delivered> {
        let attempt = &self.attempt;
        let mut outbound = OutboundMessage::from_outbox(attempt.message);
        if let Some(body) = self.body.clone() {
            outbound.body = body;
        }
        let (result, provider) = match &self.sender {
            Sender::DryRun => (Ok(attempt.d.dry_run.record(&outbound)), "dry-run"),
            Sender::Adapter(adapter) => {
                // A panic after the adapter was called may come after the provider took
                // the message: it ends failed with the reason, never handed over again.
                let call = std::panic::AssertUnwindSafe(adapter.send(&outbound));
                match futures::FutureExt::catch_unwind(call).await {
                    Ok(result) => (result, adapter.provider()),
                    Err(_) => {
                        tracing::error!(outbox_id = %attempt.message.id, "channel adapter panicked");
                        let reason = "channel adapter panicked during the send";
                        let outcome = attempt.finish(OutboxStatus::Failed, reason).await?;
                        return Ok(Delivered::Done(outcome));
                    }
                }
            }
        };
        match result {
            Ok(receipt) => Ok(Delivered::Accepted(Box::new(self.sent(
                self.contact_id,
                receipt,
                provider,
            )?))),
            Err(e) => Ok(Delivered::Done(attempt.on_error(&e).await?)),
        }
    }

    /// What recording an accepted send writes: status, activity and enrollment.
    fn sent(
        &self,
        contact_id: ContactId,
        receipt: SendReceipt,
        provider: &'static str,
    ) -> Step<SentMark> {
        let attempt = &self.attempt;
        let m = attempt.message;
        let sent_at = attempt.d.clock.now();
        let details = json!({
            "provider": provider,
            "dry_run": attempt.ws.dry_run,
            "provider_message_id": receipt.provider_message_id,
            "step_index": m.step_index,
        });
        let activity = Activity::for_contact(
            m.workspace_id,
            contact_id,
            ActivityKind::MessageSent,
            format!("Sent {} message", m.channel),
            sent_at,
        )
        .map_err(StoreError::from)?
        .with_channel(m.channel)
        .with_outbox_message(m.id)
        .with_details(details);
        Ok(SentMark {
            workspace_id: m.workspace_id,
            id: m.id,
            lease_token: attempt.token,
            sent: SentRecord {
                provider_message_id: receipt.provider_message_id,
                sent_at,
                activity,
                enrollment: self.plan.as_ref().and_then(|p| p.advance(sent_at)),
            },
        })
    }
}

impl SendAttempt<'_> {
    /// The last gate, who sends: the dry-run adapter, or the adapter the resolver gives
    /// for the message's workspace and channel (with the workspace's channel
    /// configuration). A channel that cannot be resolved is handled as a failed,
    /// retryable send before any quota is spent.
    pub(super) async fn sender(&self) -> Gate<Sender> {
        if self.ws.dry_run {
            return Ok(Sender::DryRun);
        }
        let m = self.message;
        let config = self.ws.settings.channels.get(&m.channel);
        match self
            .d
            .channels
            .resolve(m.workspace_id, m.channel, config)
            .await
        {
            Ok(adapter) => Ok(Sender::Adapter(adapter)),
            Err(e) => {
                // The error names parameters and secret references, never values.
                tracing::warn!(
                    workspace_id = %m.workspace_id,
                    outbox_id = %m.id,
                    channel = m.channel.as_str(),
                    attempt = m.attempts,
                    error = %e,
                    "no adapter for the message's channel"
                );
                Err(Stop::Settled(self.on_error(&e).await?))
            }
        }
    }

    /// Acts on a failed send.
    pub(super) async fn on_error(&self, error: &ChannelError) -> Step<Outcome> {
        let m = self.message;
        let policy = RetryPolicy {
            max_attempts: self.d.config.max_attempts(),
            backoff_base: self.d.config.backoff_base(),
            backoff_cap: self.d.config.backoff_cap(),
        };
        match on_channel_error(error, m.attempts, &policy, jitter_fraction()) {
            FailureAction::Retry { after, reason } => {
                let reschedule = Reschedule {
                    not_before: later(self.now, after),
                    reason: Some(reason),
                    count_attempt: true,
                };
                self.d
                    .store
                    .reschedule_outbox(m.workspace_id, m.id, self.token, &reschedule)
                    .await?;
                Ok(Outcome::Retried)
            }
            FailureAction::DeadLetter { reason } => {
                let outcome = self.finish(OutboxStatus::DeadLettered, &reason).await?;
                self.refund_if_unsent(error).await;
                Ok(outcome)
            }
            FailureAction::Fail { reason, suppress } => {
                if suppress {
                    self.suppress().await?;
                }
                let outcome = self.finish(OutboxStatus::Failed, &reason).await?;
                self.refund_if_unsent(error).await;
                Ok(outcome)
            }
        }
    }

    /// The quota key the send gate takes this attempt's unit of.
    pub(super) fn quota_key(&self) -> QuotaKey {
        self.ws
            .settings
            .send_quota_key(self.message.channel, self.now)
    }

    /// Gives the day's quota unit back after the message ended for an error that says
    /// the request never reached the provider: only
    /// [`ChannelErrorKind::Configuration`] (no adapter could be made, a secret could
    /// not be resolved, a parameter is missing), raised before any request is made.
    /// Every other kind may have reached the provider (a timeout, a 5xx after the
    /// provider took the message, a rejection), so its unit stays spent. A failed
    /// give-back is logged; it only leaves the unit spent.
    async fn refund_if_unsent(&self, error: &ChannelError) {
        if error.kind() != ChannelErrorKind::Configuration {
            return;
        }
        let m = self.message;
        let key = self.quota_key();
        if let Err(e) = self
            .d
            .store
            .release_send_quota(m.workspace_id, m.id, &key)
            .await
        {
            tracing::warn!(outbox_id = %m.id, error = %e, "giving the quota unit back failed");
        }
    }

    /// Suppresses the recipient on the message's channel as an invalid recipient.
    async fn suppress(&self) -> Step<()> {
        let m = self.message;
        match Suppression::new(
            m.workspace_id,
            Some(m.channel),
            &m.recipient,
            SuppressionReason::InvalidRecipient,
            self.now,
        ) {
            Ok(suppression) => {
                self.d.store.add_suppression(&suppression).await?;
            }
            Err(e) => {
                tracing::warn!(outbox_id = %m.id, error = %e, "recipient could not be suppressed");
            }
        }
        Ok(())
    }
}
