//! [`DryRunChannel`]: the adapter used when dry-run is on. Records what would be sent,
//! sends nothing, never fails.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crate::clock::{Clock, SystemClock};
use crate::ids::OutboxMessageId;
use crate::model::Channel;

/// One message a [`DryRunChannel`] accepted. Its `Debug` masks the message's personal
/// data, as [`OutboundMessage`]'s does.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunRecord {
    /// The message exactly as the dispatcher handed it over.
    pub message: OutboundMessage,
    /// The receipt returned for it.
    pub receipt: SendReceipt,
}

#[derive(Debug, Default)]
struct Log {
    records: VecDeque<DryRunRecord>,
    receipts: HashMap<OutboxMessageId, SendReceipt>,
    total: u64,
}

/// An adapter that never touches the network, fit for production dry-runs.
///
/// - Every send succeeds with a receipt whose provider id is `dry-run:<outbox id>`,
///   timed by its clock.
/// - Like a provider honouring idempotency keys, a second send of the same outbox id
///   returns the first receipt and is not recorded again (while the first is retained).
/// - It keeps the latest `capacity` records (10,000 by default) so a long dry-run does
///   not grow without bound; [`DryRunChannel::total`] counts every recorded message.
/// - Clones, and adapters made with [`DryRunChannel::for_channel`], share one log.
/// - It logs ids only, never bodies or addresses; its `Debug` shows the channel and
///   the record counts, not the records.
///
/// The dispatcher uses one for every channel through [`DryRunChannel::record`]; as a
/// registered [`ChannelAdapter`] it reports the channel it was made for.
#[derive(Clone)]
pub struct DryRunChannel {
    channel: Channel,
    clock: Arc<dyn Clock>,
    capacity: usize,
    log: Arc<Mutex<Log>>,
}

impl fmt::Debug for DryRunChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.lock();
        f.debug_struct("DryRunChannel")
            .field("channel", &self.channel)
            .field("capacity", &self.capacity)
            .field("retained", &log.records.len())
            .field("total", &log.total)
            .finish_non_exhaustive()
    }
}

impl DryRunChannel {
    /// The default number of retained records.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// A dry-run adapter for `channel`, timing receipts by the system clock.
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            clock: Arc::new(SystemClock),
            capacity: Self::DEFAULT_CAPACITY,
            log: Arc::new(Mutex::new(Log::default())),
        }
    }

    /// Times receipts by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Retains at most `capacity` records (at least 1).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// An adapter for `channel` sharing this one's log, clock and capacity.
    #[must_use]
    pub fn for_channel(&self, channel: Channel) -> Self {
        Self {
            channel,
            ..self.clone()
        }
    }

    /// Records `message` (any channel) and returns its receipt; infallible.
    pub fn record(&self, message: &OutboundMessage) -> SendReceipt {
        let accepted_at = self.clock.now();
        let mut log = self.lock();
        if let Some(previous) = log.receipts.get(&message.id) {
            return previous.clone();
        }
        let receipt = SendReceipt {
            provider_message_id: Some(format!("dry-run:{}", message.id)),
            accepted_at,
        };
        while log.records.len() >= self.capacity {
            match log.records.pop_front() {
                Some(old) => {
                    log.receipts.remove(&old.message.id);
                }
                None => break,
            }
        }
        log.receipts.insert(message.id, receipt.clone());
        log.records.push_back(DryRunRecord {
            message: message.clone(),
            receipt: receipt.clone(),
        });
        log.total = log.total.saturating_add(1);
        drop(log);
        tracing::debug!(
            channel = message.channel.as_str(),
            outbox_id = %message.id,
            "dry run: message recorded, not sent"
        );
        receipt
    }

    /// The retained records, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<DryRunRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// The retained messages, oldest first.
    #[must_use]
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.lock()
            .records
            .iter()
            .map(|r| r.message.clone())
            .collect()
    }

    /// How many records are retained.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is retained.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    /// How many messages were recorded in total, evicted ones included.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Forgets every record (the total too).
    pub fn clear(&self) {
        *self.lock() = Log::default();
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        Ok(self.record(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::WorkspaceId;
    use crate::model::OutboxMessage;
    use chrono::{TimeZone, Utc};

    fn outbound() -> OutboundMessage {
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let m = OutboxMessage::new(
            WorkspaceId::new(),
            Channel::Sms,
            "+4915112345678",
            "Hi",
            "k",
            now,
        )
        .unwrap();
        OutboundMessage::from_outbox(&m)
    }

    #[tokio::test]
    async fn records_once_per_outbox_id_and_stays_bounded() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
        let dry = DryRunChannel::new(Channel::Email)
            .with_clock(Arc::new(clock.clone()))
            .with_capacity(2);
        let first = outbound();
        let receipt = dry.send(&first).await.unwrap();
        assert_eq!(
            receipt.provider_message_id,
            Some(format!("dry-run:{}", first.id))
        );
        assert_eq!(receipt.accepted_at, clock.now());
        assert_eq!(dry.record(&first), receipt);
        assert_eq!(dry.len(), 1);
        let shared = dry.for_channel(Channel::Sms);
        assert_eq!(shared.channel(), Channel::Sms);
        shared.record(&outbound());
        shared.record(&outbound());
        assert_eq!(dry.len(), 2, "capacity bounds the retained records");
        assert_eq!(dry.total(), 3);
        dry.clear();
        assert!(shared.is_empty());
    }

    #[test]
    fn debug_shows_counts_not_messages() {
        let dry = DryRunChannel::new(Channel::Sms);
        let message = outbound();
        dry.record(&message);
        let channel_debug = format!("{dry:?}");
        assert!(channel_debug.contains("total: 1"), "{channel_debug}");
        let record_debug = format!("{:?}", dry.records());
        for debug in [&channel_debug, &record_debug] {
            assert!(!debug.contains("151123"), "the number leaks in {debug}");
            assert!(!debug.contains("Hi\""), "the body leaks in {debug}");
        }
        assert!(
            record_debug.contains(&message.id.to_string()),
            "{record_debug}"
        );
    }
}
