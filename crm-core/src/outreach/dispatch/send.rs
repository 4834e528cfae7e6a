//! Who sends a message (the last gate), then stages 6 and 7: the daily quota, taken
//! once per workspace and channel for a whole batch, then the send and what follows
//! from its result.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::backoff::jitter_fraction;
use super::decision::{FailureAction, RetryPolicy, later, on_channel_error};
use super::pipeline::{Gate, Ready, SendAttempt, Step, Stop, settle};
use super::{Dispatcher, Outcome};
use crate::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crate::error::StoreError;
use crate::ids::{ContactId, WorkspaceId};
use crate::model::{
    Activity, ActivityKind, Channel, OutboxMessage, OutboxStatus, Suppression, SuppressionReason,
};
use crate::outreach::schedule::{local_day, start_of_next_day};
use crate::store::{QuotaDecision, Reschedule, SentRecord};

/// How many times a contended quota grab is tried before the rest waits a day.
const QUOTA_TRIES: usize = 16;

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

/// Cleared messages split into those within the quota and those postponed or left.
pub(super) struct Allotted<'a> {
    pub(super) go: Vec<Ready<'a>>,
    pub(super) outcomes: Vec<Outcome>,
}

impl Dispatcher {
    /// Takes the quota for `ready` (in claim order) with one store call per workspace
    /// and channel where it suffices: the first messages within the cap go, the rest
    /// are postponed to the start of the next local day.
    pub(super) async fn allot<'a>(
        &self,
        ready: Vec<Ready<'a>>,
        now: DateTime<Utc>,
    ) -> Allotted<'a> {
        let mut groups: BTreeMap<(WorkspaceId, Channel), Vec<Ready<'a>>> = BTreeMap::new();
        for r in ready {
            let key = (r.attempt.message.workspace_id, r.attempt.message.channel);
            groups.entry(key).or_default().push(r);
        }
        let keys: Vec<(WorkspaceId, Channel)> = groups.keys().copied().collect();
        let grants = futures::future::join_all(
            groups
                .iter()
                .map(|(&(ws, channel), group)| self.grant(ws, channel, group, now)),
        )
        .await;
        let mut allotted = Allotted {
            go: Vec::new(),
            outcomes: Vec::new(),
        };
        let mut postponed = Vec::new();
        for ((ws, channel), (group, grant)) in
            keys.into_iter().zip(groups.into_values().zip(grants))
        {
            let granted = match grant {
                Ok(granted) => granted,
                Err(e) => {
                    tracing::warn!(
                        workspace_id = %ws,
                        channel = channel.as_str(),
                        error = %e,
                        "taking the send quota failed; the messages are left to expire"
                    );
                    allotted
                        .outcomes
                        .extend(group.iter().map(|_| Outcome::LeftToExpire));
                    continue;
                }
            };
            let mut group = group.into_iter();
            allotted.go.extend(group.by_ref().take(granted));
            postponed.extend(group);
        }
        let waits = futures::future::join_all(postponed.iter().map(|r| async move {
            let tz = r.attempt.ws.settings.default_time_zone;
            let day = local_day(tz, now);
            let channel = r.attempt.message.channel;
            let cap = r.attempt.ws.settings.daily_cap(channel);
            let reason = format!("daily {channel} quota of {cap} exhausted");
            settle(
                r.attempt.message,
                r.attempt
                    .postpone(start_of_next_day(tz, day), &reason)
                    .await,
            )
        }))
        .await;
        allotted.outcomes.extend(waits);
        allotted
    }

    /// Consumes up to `group.len()` units of the group's daily quota; returns how many
    /// were granted.
    async fn grant(
        &self,
        ws: WorkspaceId,
        channel: Channel,
        group: &[Ready<'_>],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let Some(first) = group.first() else {
            return Ok(0);
        };
        let settings = &first.attempt.ws.settings;
        let key = settings.send_quota_key(channel, now);
        let cap = settings.daily_cap(channel);
        let mut want = u32::try_from(group.len()).unwrap_or(u32::MAX);
        for _ in 0..QUOTA_TRIES {
            if want == 0 {
                break;
            }
            match self.store.try_consume_quota(ws, &key, cap, want).await? {
                QuotaDecision::Granted { .. } => {
                    return Ok(usize::try_from(want).unwrap_or(usize::MAX));
                }
                QuotaDecision::Exhausted { used, cap } => {
                    want = want.min(cap.saturating_sub(used));
                }
            }
        }
        Ok(0)
    }

    /// Stage 7 for one message within its quota, in its own span.
    pub(super) async fn deliver(&self, ready: Ready<'_>) -> Outcome {
        let message = ready.attempt.message;
        let span = send_span(message);
        async move { settle(message, ready.send().await) }
            .instrument(span)
            .await
    }
}

impl Ready<'_> {
    async fn send(self) -> Step<Outcome> {
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
                        return attempt.finish(OutboxStatus::Failed, reason).await;
                    }
                }
            }
        };
        match result {
            Ok(receipt) => self.sent(self.contact_id, receipt, provider).await,
            Err(e) => attempt.on_error(&e).await,
        }
    }

    /// Records an accepted send: status, activity and enrollment in one store call.
    async fn sent(
        &self,
        contact_id: ContactId,
        receipt: SendReceipt,
        provider: &'static str,
    ) -> Step<Outcome> {
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
        let record = SentRecord {
            provider_message_id: receipt.provider_message_id,
            sent_at,
            activity,
            enrollment: self.plan.as_ref().and_then(|p| p.advance(sent_at)),
        };
        let marked = attempt
            .d
            .store
            .mark_outbox_sent(m.workspace_id, m.id, attempt.token, &record)
            .await;
        if let Err(e) = marked {
            tracing::error!(
                outbox_id = %m.id,
                error = %e,
                "provider accepted the message but recording it failed; a later claim \
                 re-sends it under the same idempotency key"
            );
            return Err(e.into());
        }
        Ok(Outcome::Sent)
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
                self.finish(OutboxStatus::DeadLettered, &reason).await
            }
            FailureAction::Fail { reason, suppress } => {
                if suppress {
                    self.suppress().await?;
                }
                self.finish(OutboxStatus::Failed, &reason).await
            }
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
