//! Duplicate-delivery detection.
//!
//! Providers retry, and a retried delivery carries the same delivery id (Svix `svix-id`,
//! Standard Webhooks `webhook-id`, Twilio's idempotency token, ...). [`Deduplicated`] wraps
//! any verifier and refuses a delivery whose `(provider, delivery id)` was already
//! recorded in a [`DeliveryLog`], with [`WebhookError::Duplicate`].
//!
//! [`MemoryDeliveryLog`] remembers deliveries in one process only: behind several
//! processes, each handles the same delivery once. A host running the engine's inbound
//! pipeline (crm-core's `InboundPipeline`) needs no wrapper: the
//! pipeline records deliveries in the store every process shares.

use std::collections::{HashSet, VecDeque};
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use crm_core::{
    InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError, WebhookRequest,
};

/// Whether a delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Never recorded before; it is recorded now.
    First,
    /// Already recorded.
    Duplicate,
}

/// Remembers which deliveries were processed.
///
/// # Contract
/// - `try_record` MUST be atomic: of concurrent calls with the same key exactly one
///   returns [`DeliveryStatus::First`].
/// - Keys are `(provider, delivery_id)`; the same id from two providers is two keys.
/// - A log MAY forget old keys (a bounded log does); it MUST NOT report a key it never
///   recorded as a duplicate.
pub trait DeliveryLog: Send + Sync + Debug + 'static {
    /// Records the key and reports whether it was new.
    fn try_record(&self, provider: &str, delivery_id: &str) -> DeliveryStatus;

    /// Forgets a key, so the provider's retry is processed again (call it when handling
    /// a recorded delivery failed).
    fn forget(&self, provider: &str, delivery_id: &str);
}

type Key = (String, String);

#[derive(Default)]
struct Entries {
    seen: HashSet<Key>,
    order: VecDeque<Key>,
}

/// An in-memory [`DeliveryLog`] holding the most recent `capacity` keys; the oldest is
/// evicted first. One mutex, never held across an `.await`.
pub struct MemoryDeliveryLog {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl MemoryDeliveryLog {
    /// The default capacity.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A log remembering up to `capacity` deliveries (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// How many keys are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryDeliveryLog {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl Debug for MemoryDeliveryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDeliveryLog")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl DeliveryLog for MemoryDeliveryLog {
    fn try_record(&self, provider: &str, delivery_id: &str) -> DeliveryStatus {
        let key = (provider.to_owned(), delivery_id.to_owned());
        let mut entries = self.lock();
        if entries.seen.contains(&key) {
            return DeliveryStatus::Duplicate;
        }
        while entries.order.len() >= self.capacity {
            match entries.order.pop_front() {
                Some(old) => {
                    entries.seen.remove(&old);
                }
                None => break,
            }
        }
        entries.seen.insert(key.clone());
        entries.order.push_back(key);
        DeliveryStatus::First
    }

    fn forget(&self, provider: &str, delivery_id: &str) {
        let key = (provider.to_owned(), delivery_id.to_owned());
        let mut entries = self.lock();
        if entries.seen.remove(&key) {
            entries.order.retain(|k| k != &key);
        }
    }
}

/// A verifier that also refuses repeated deliveries.
///
/// `verify` runs the inner verifier first (so forged requests never reach the log), then
/// records the delivery id; a second delivery with the same id fails with
/// [`WebhookError::Duplicate`]. Requests without a delivery id pass through unrecorded.
pub struct Deduplicated<W> {
    inner: W,
    log: Arc<dyn DeliveryLog>,
}

impl<W: InboundWebhook> Deduplicated<W> {
    /// Wraps `inner`, recording deliveries in `log`.
    pub fn new(inner: W, log: Arc<dyn DeliveryLog>) -> Self {
        Self { inner, log }
    }

    /// The wrapped verifier.
    pub fn inner(&self) -> &W {
        &self.inner
    }

    /// The delivery log.
    pub fn log(&self) -> &Arc<dyn DeliveryLog> {
        &self.log
    }
}

impl<W: Debug> Debug for Deduplicated<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicated")
            .field("inner", &self.inner)
            .field("log", &self.log)
            .finish()
    }
}

impl<W: InboundWebhook> InboundWebhook for Deduplicated<W> {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let verified = self.inner.verify(unverified, now)?;
        if let Some(id) = verified.delivery_id()
            && self.log.try_record(self.inner.provider(), id) == DeliveryStatus::Duplicate
        {
            return Err(WebhookError::Duplicate(id.to_owned()));
        }
        Ok(verified)
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        self.inner.parse(webhook)
    }

    fn handshake(&self, request: &WebhookRequest) -> Option<Result<String, WebhookError>> {
        self.inner.handshake(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_log_evicts_oldest() {
        let log = MemoryDeliveryLog::new(2);
        assert_eq!(log.try_record("p", "a"), DeliveryStatus::First);
        assert_eq!(log.try_record("p", "a"), DeliveryStatus::Duplicate);
        assert_eq!(log.try_record("q", "a"), DeliveryStatus::First);
        assert_eq!(log.try_record("p", "b"), DeliveryStatus::First);
        assert_eq!(log.len(), 2);
        assert_eq!(log.try_record("p", "a"), DeliveryStatus::First);
        log.forget("p", "a");
        assert_eq!(log.try_record("p", "a"), DeliveryStatus::First);
    }
}
