//! A panic in a channel adapter: caught per message, the message ends failed with the
//! reason, and it is never handed to the provider again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::Duration;

use super::{Harness, config, once};
use crm_core::DynStore;
use crm_core::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crm_core::clock::Clock;
use crm_core::model::{Channel, OutboxStatus};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};

/// An email adapter whose send panics (after the provider may have taken the message),
/// counting the calls.
#[derive(Debug, Default)]
struct PanickingChannel {
    calls: AtomicUsize,
}

#[async_trait]
impl ChannelAdapter for PanickingChannel {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider(&self) -> &'static str {
        "panicking"
    }

    #[allow(clippy::panic)]
    async fn send(&self, _message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        panic!("adapter bug after the provider accepted the message");
    }
}

/// A panicking adapter fails only its message, with the reason; the batch goes on, and
/// neither a later batch nor a reaped lease hands the message over again.
pub async fn dispatch_panicking_adapter_fails_the_message_once(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let adapter = Arc::new(PanickingChannel::default());
    let dispatcher = Dispatcher::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::new(WorkspaceSettings::default())),
        ChannelRegistry::new().with(adapter.clone()),
        config().with_max_attempts(5),
    )
    .with_policy(Arc::new(super::ApproveAll { rule: h.rule }));

    let report = once(&dispatcher).await;
    assert_eq!(report.failed, 1, "the panic fails the message: {report:?}");
    let stored = h.get(message.id).await;
    assert_eq!(
        stored.status,
        OutboxStatus::Failed,
        "a panic is a permanent failure"
    );
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "the reason is recorded: {:?}",
        stored.last_error
    );
    assert!(
        stored.lease.is_none(),
        "no lease is left to expire and be reclaimed"
    );

    // Later batches, after any lease would have expired and been reaped, hand nothing
    // over again.
    for _ in 0..3 {
        h.clock.advance(Duration::hours(2));
        let reaped = h
            .store
            .reap_outbox_leases(crm_core::store::Scope::All, h.clock.now())
            .await;
        assert!(reaped.is_ok(), "reap: {reaped:?}");
        let report = once(&dispatcher).await;
        assert_eq!(report.claimed, 0, "nothing to claim again: {report:?}");
    }
    assert_eq!(
        adapter.calls.load(Ordering::SeqCst),
        1,
        "the message was handed to the adapter exactly once"
    );
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Failed);
}

/// A panicking adapter for one message does not stop the others of the batch: an
/// adapter that panics only for one recipient leaves the rest sent.
pub async fn dispatch_panic_is_caught_per_message(store: Arc<DynStore>) {
    #[derive(Debug)]
    struct PanicsFor(String, AtomicUsize);

    #[async_trait]
    impl ChannelAdapter for PanicsFor {
        fn channel(&self) -> Channel {
            Channel::Email
        }

        fn provider(&self) -> &'static str {
            "panics-for-one"
        }

        #[allow(clippy::panic)]
        async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            if message.recipient == self.0 {
                panic!("adapter bug for one recipient");
            }
            Ok(SendReceipt {
                provider_message_id: Some(format!("ok-{}", message.id)),
                accepted_at: chrono::DateTime::UNIX_EPOCH,
            })
        }
    }

    let h = Harness::new(store);
    let bad = h.enqueue().await;
    let good = [h.enqueue().await, h.enqueue().await];
    let adapter = Arc::new(PanicsFor(bad.recipient.clone(), AtomicUsize::new(0)));
    let dispatcher = Dispatcher::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::new(WorkspaceSettings::default())),
        ChannelRegistry::new().with(adapter.clone()),
        config(),
    )
    .with_policy(Arc::new(super::ApproveAll { rule: h.rule }));
    let report = once(&dispatcher).await;
    assert_eq!((report.sent, report.failed), (2, 1), "{report:?}");
    assert_eq!(h.get(bad.id).await.status, OutboxStatus::Failed);
    for m in &good {
        assert_eq!(h.get(m.id).await.status, OutboxStatus::Sent);
    }
    h.clock.advance(Duration::hours(1));
    assert_eq!(once(&dispatcher).await.claimed, 0);
    assert_eq!(
        adapter.1.load(Ordering::SeqCst),
        3,
        "each message handed over once"
    );
}
