//! [`StubChannel`]: a recording, scriptable adapter for tests of anything that sends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crate::clock::{Clock, SystemClock};
use crate::model::Channel;

/// A failure a [`StubChannel`] answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubFailure {
    /// [`ChannelError::Retryable`] ("stub timeout").
    Retryable {
        /// The provider's requested wait.
        retry_after: Option<Duration>,
    },
    /// [`ChannelError::RateLimited`].
    RateLimited {
        /// The provider's requested wait.
        retry_after: Option<Duration>,
    },
    /// [`ChannelError::Permanent`] ("stub rejected the content").
    Permanent,
    /// [`ChannelError::InvalidRecipient`] ("stub does not know the address").
    InvalidRecipient,
    /// [`ChannelError::Auth`] ("stub refused the key").
    Auth,
}

impl StubFailure {
    /// The error this failure stands for, from provider `"stub"`.
    #[must_use]
    pub fn to_error(&self) -> ChannelError {
        const PROVIDER: &str = "stub";
        match self {
            Self::Retryable { retry_after } => ChannelError::Retryable {
                provider: PROVIDER,
                reason: "stub timeout".into(),
                retry_after: *retry_after,
                source: None,
            },
            Self::RateLimited { retry_after } => ChannelError::RateLimited {
                provider: PROVIDER,
                retry_after: *retry_after,
            },
            Self::Permanent => ChannelError::Permanent {
                provider: PROVIDER,
                reason: "stub rejected the content".into(),
            },
            Self::InvalidRecipient => ChannelError::InvalidRecipient {
                provider: PROVIDER,
                reason: "stub does not know the address".into(),
            },
            Self::Auth => ChannelError::Auth {
                provider: PROVIDER,
                reason: "stub refused the key".into(),
            },
        }
    }
}

#[derive(Debug, Default)]
struct KeyStats {
    handed: u32,
    receipt: Option<SendReceipt>,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<StubFailure>,
    keys: HashMap<String, KeyStats>,
    delivered: Vec<OutboundMessage>,
    handed: u64,
}

/// A test double that behaves like a provider honouring idempotency keys and records
/// everything it is handed.
///
/// - Each call to `send` is *handed* to the stub and counted under its
///   [`OutboundMessage::idempotency_key`].
/// - A key already *delivered* returns its first receipt and is not delivered again
///   (the provider-side deduplication the adapter contract relies on).
/// - Otherwise the stub answers the next scripted failure ([`StubChannel::with_script`]),
///   or its permanent failure ([`StubChannel::failing`]), or delivers: it records the
///   message and returns a receipt `stub:<key>` timed by its clock.
/// - With a latency, the answer is delayed *after* delivery, like a provider that
///   accepted the message while the response is still on its way: a caller stopped
///   then has delivered without hearing back.
///
/// Clones share the record and the script; latency and clock are per clone.
#[derive(Debug, Clone)]
pub struct StubChannel {
    channel: Channel,
    always: Option<StubFailure>,
    latency: Option<Duration>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl StubChannel {
    /// A stub for `channel` that delivers every message.
    #[must_use]
    pub fn ok(channel: Channel) -> Self {
        Self {
            channel,
            always: None,
            latency: None,
            clock: Arc::new(SystemClock),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// A stub for `channel` that fails every send with `failure` (deliveries made
    /// before, by clones, still deduplicate).
    #[must_use]
    pub fn failing(channel: Channel, failure: StubFailure) -> Self {
        Self {
            always: Some(failure),
            ..Self::ok(channel)
        }
    }

    /// Queues failures answered, in order, by the next sends that are not duplicates;
    /// afterwards the stub delivers again.
    #[must_use]
    pub fn with_script(self, failures: impl IntoIterator<Item = StubFailure>) -> Self {
        self.lock().script.extend(failures);
        self
    }

    /// Delays every answer by `latency` (after delivering); `None` answers at once.
    #[must_use]
    pub fn with_latency(mut self, latency: Option<Duration>) -> Self {
        self.latency = latency;
        self
    }

    /// Times receipts by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many sends were handed over in total.
    #[must_use]
    pub fn handed_count(&self) -> u64 {
        self.lock().handed
    }

    /// How many times `key` was handed over.
    #[must_use]
    pub fn handed(&self, key: &str) -> u32 {
        self.lock().keys.get(key).map_or(0, |k| k.handed)
    }

    /// Every key handed over, with how many times.
    #[must_use]
    pub fn handed_per_key(&self) -> HashMap<String, u32> {
        self.lock()
            .keys
            .iter()
            .map(|(key, stats)| (key.clone(), stats.handed))
            .collect()
    }

    /// The delivered messages, in delivery order; each key appears at most once.
    #[must_use]
    pub fn delivered(&self) -> Vec<OutboundMessage> {
        self.lock().delivered.clone()
    }

    /// How many messages were delivered.
    #[must_use]
    pub fn delivered_count(&self) -> usize {
        self.lock().delivered.len()
    }

    /// Whether `key` was delivered.
    #[must_use]
    pub fn was_delivered(&self, key: &str) -> bool {
        self.lock()
            .keys
            .get(key)
            .is_some_and(|k| k.receipt.is_some())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let key = message.idempotency_key();
        let now = self.clock.now();
        let mut state = self.lock();
        state.handed = state.handed.saturating_add(1);
        let stats = state.keys.entry(key.clone()).or_default();
        stats.handed = stats.handed.saturating_add(1);
        if let Some(receipt) = &stats.receipt {
            return Ok(receipt.clone());
        }
        if let Some(failure) = &self.always {
            return Err(failure.to_error());
        }
        if let Some(failure) = state.script.pop_front() {
            return Err(failure.to_error());
        }
        let receipt = SendReceipt {
            provider_message_id: Some(format!("stub:{key}")),
            accepted_at: now,
        };
        state.keys.entry(key).or_default().receipt = Some(receipt.clone());
        state.delivered.push(message.clone());
        Ok(receipt)
    }
}

#[async_trait]
impl ChannelAdapter for StubChannel {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn provider(&self) -> &'static str {
        "stub"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let answer = self.answer(message);
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelErrorKind;
    use crate::ids::WorkspaceId;
    use crate::model::OutboxMessage;
    use chrono::{TimeZone, Utc};

    fn outbound() -> OutboundMessage {
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let m = OutboxMessage::new(WorkspaceId::new(), Channel::Email, "a@b.c", "Hi", "k", now)
            .unwrap();
        OutboundMessage::from_outbox(&m)
    }

    #[tokio::test]
    async fn scripts_then_delivers_once_per_key() {
        let stub = StubChannel::ok(Channel::Email).with_script([
            StubFailure::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            StubFailure::InvalidRecipient,
        ]);
        let m = outbound();
        let key = m.idempotency_key();
        let e = stub.send(&m).await.unwrap_err();
        assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(stub.send(&m).await.unwrap_err().suppresses_recipient());
        let first = stub.send(&m).await.unwrap();
        assert_eq!(stub.clone().send(&m).await.unwrap(), first);
        assert_eq!(stub.handed(&key), 4);
        assert_eq!(stub.delivered_count(), 1);
        assert!(stub.was_delivered(&key));
        assert_eq!(stub.handed_count(), 4);
    }

    #[tokio::test]
    async fn failing_stubs_never_deliver() {
        let stub = StubChannel::failing(Channel::Email, StubFailure::Permanent);
        for _ in 0..3 {
            assert_eq!(
                stub.send(&outbound()).await.unwrap_err().kind(),
                ChannelErrorKind::Permanent
            );
        }
        assert_eq!(stub.delivered_count(), 0);
        assert_eq!(StubFailure::Auth.to_error().kind(), ChannelErrorKind::Auth);
        assert!(
            StubFailure::Retryable { retry_after: None }
                .to_error()
                .is_retryable()
        );
    }
}
