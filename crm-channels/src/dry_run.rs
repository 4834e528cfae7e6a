//! [`DryRunChannel`]: records what would be sent, sends nothing.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::model::Channel;
use crm_core::{ChannelAdapter, ChannelError, Clock, OutboundMessage, SendReceipt, SystemClock};

/// One message a [`DryRunChannel`] accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunRecord {
    /// The message, exactly as the dispatcher handed it over.
    pub message: OutboundMessage,
    /// The receipt returned for it.
    pub receipt: SendReceipt,
}

/// A channel adapter that never touches the network: every send is recorded in memory
/// and acknowledged with a receipt whose id is `dry-run:<outbox id>`.
///
/// It works for any [`Channel`] (give it the channel it stands in for). Like a provider
/// honouring idempotency keys, a second send with the same
/// [`OutboundMessage::idempotency_key`] returns the first receipt and is not recorded
/// again. Clones share the same record.
#[derive(Debug, Clone)]
pub struct DryRunChannel {
    channel: Channel,
    clock: Arc<dyn Clock>,
    sent: Arc<Mutex<Vec<DryRunRecord>>>,
}

impl DryRunChannel {
    /// A dry-run adapter standing in for `channel`, timing receipts by the system clock.
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self::with_clock(channel, Arc::new(SystemClock))
    }

    /// A dry-run adapter whose receipts carry `clock`'s time.
    #[must_use]
    pub fn with_clock(channel: Channel, clock: Arc<dyn Clock>) -> Self {
        Self {
            channel,
            clock,
            sent: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Everything recorded so far, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<DryRunRecord> {
        self.lock().clone()
    }

    /// The messages recorded so far, oldest first.
    #[must_use]
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.lock().iter().map(|r| r.message.clone()).collect()
    }

    /// How many messages were recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DryRunRecord>> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receipt id a dry run gives an outbox message.
fn receipt_id(message: &OutboundMessage) -> String {
    format!("dry-run:{}", message.idempotency_key())
}

#[async_trait]
impl ChannelAdapter for DryRunChannel {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn provider(&self) -> &'static str {
        "dry-run"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let accepted_at: DateTime<Utc> = self.clock.now();
        let mut sent = self.lock();
        if let Some(previous) = sent
            .iter()
            .find(|r| r.message.idempotency_key() == message.idempotency_key())
        {
            return Ok(previous.receipt.clone());
        }
        let receipt = SendReceipt {
            provider_message_id: Some(receipt_id(message)),
            accepted_at,
        };
        sent.push(DryRunRecord {
            message: message.clone(),
            receipt: receipt.clone(),
        });
        tracing::info!(
            provider = "dry-run",
            channel = self.channel.as_str(),
            outbox_id = %message.id,
            "dry run: message recorded, not sent"
        );
        Ok(receipt)
    }
}
