//! [`CountingAdapter`]: a channel adapter that counts every hand-over per message, with
//! a configurable latency standing in for the provider's round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use crm_core::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crm_core::ids::OutboxMessageId;
use crm_core::model::Channel;

/// Counts hand-overs per outbox message; sleeps `latency` per send (none for zero).
///
/// Shared by the engine's run and the baselines, so both pay the same per-send cost.
#[derive(Debug, Clone)]
pub struct CountingAdapter {
    channel: Channel,
    latency: Duration,
    handed: Arc<Mutex<HashMap<OutboxMessageId, u32>>>,
    total: Arc<AtomicU64>,
}

impl CountingAdapter {
    /// An adapter for `channel` taking `latency` per send.
    #[must_use]
    pub fn new(channel: Channel, latency: Duration) -> Self {
        Self {
            channel,
            latency,
            handed: Arc::default(),
            total: Arc::default(),
        }
    }

    /// Records one hand-over of `id` and waits the latency; the provider's id is
    /// derived from the message id.
    pub async fn hand_over(&self, id: OutboxMessageId) -> String {
        *self
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        format!("bench-{id}")
    }

    /// Hand-overs in total.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Hand-overs of `id`.
    #[must_use]
    pub fn count(&self, id: OutboxMessageId) -> u32 {
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// The ids handed over more than once.
    #[must_use]
    pub fn duplicates(&self) -> Vec<OutboxMessageId> {
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[async_trait]
impl ChannelAdapter for CountingAdapter {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn provider(&self) -> &'static str {
        "bench"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let provider_message_id = self.hand_over(message.id).await;
        Ok(SendReceipt {
            provider_message_id: Some(provider_message_id),
            // The receipt's time is informational; the dispatcher stamps the send with
            // its own clock.
            #[allow(clippy::disallowed_methods)]
            accepted_at: Utc::now(),
        })
    }
}
