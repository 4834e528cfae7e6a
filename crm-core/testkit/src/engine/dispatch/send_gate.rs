//! The send gate seen from the dispatcher: unsubscribes linearizable with sends, and
//! quota that survives a dispatcher's crash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use tokio::sync::{Notify, Semaphore};

use super::{ApproveAll, Harness, config, drain, ok};
use crate::store::fixtures::{base, lease_ttl};
use crm_core::DynStore;
use crm_core::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::{
    Channel, OutboxMessage, OutboxStatus, Suppression, SuppressionReason, normalize_address,
};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, DispatcherConfig};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::{Claim, MAX_CLOCK_SKEW, Scope, SendStart, SendStartOutcome};

/// One adapter call: the global sequence number at its start, the message, the
/// normalised recipient.
type Call = (u64, OutboxMessageId, String);

/// An email adapter that stamps each call with the shared sequence and can hold its
/// first call until released.
#[derive(Debug)]
struct GateAdapter {
    seq: Arc<AtomicU64>,
    calls: std::sync::Mutex<Vec<Call>>,
    /// Told when the first call entered.
    entered: Notify,
    /// Holds the first call until a permit is added (`None`: never holds).
    hold: Option<Semaphore>,
    /// A little jitter per call, in microseconds (0: none).
    jitter_us: u64,
}

impl GateAdapter {
    fn new(seq: Arc<AtomicU64>, hold: bool, jitter_us: u64) -> Self {
        Self {
            seq,
            calls: std::sync::Mutex::new(Vec::new()),
            entered: Notify::new(),
            hold: hold.then(|| Semaphore::new(0)),
            jitter_us,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ChannelAdapter for GateAdapter {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider(&self) -> &'static str {
        "gate-test"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let at = self.seq.fetch_add(1, Ordering::SeqCst);
        let first = {
            let mut calls = self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            calls.push((at, message.id, normalize_address(&message.recipient)));
            calls.len() == 1
        };
        if first {
            self.entered.notify_one();
            if let Some(hold) = &self.hold {
                let _permit = hold.acquire().await.expect("the hold is never closed");
            }
        }
        if self.jitter_us > 0 {
            let us = at.wrapping_mul(2_654_435_761) % self.jitter_us;
            tokio::time::sleep(StdDuration::from_micros(us)).await;
        }
        Ok(SendReceipt {
            provider_message_id: Some(format!("gate-{}", message.id)),
            accepted_at: base(),
        })
    }
}

fn dispatcher(h: &Harness, adapter: Arc<GateAdapter>, cfg: DispatcherConfig) -> Dispatcher {
    Dispatcher::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::new(WorkspaceSettings::default())),
        ChannelRegistry::new().with(adapter),
        cfg.with_env_dry_run(false),
    )
    .with_policy(Arc::new(ApproveAll { rule: h.rule }))
}

fn unsubscribe(h: &Harness, address: &str) -> Suppression {
    Suppression::new(
        h.ws,
        None,
        address,
        SuppressionReason::Unsubscribed,
        h.clock_now(),
    )
    .expect("valid suppression")
}

/// Two approved messages in one batch, sent one at a time: suppressing the second
/// recipient while the first send is under way stops the second send. The
/// unsubscribe reports the first as in flight and the second as cancelled.
pub async fn dispatch_unsubscribe_mid_batch_stops_the_later_send(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let mut messages = Vec::new();
    for _ in 0..2 {
        messages.push(h.enqueue().await);
    }
    let adapter = Arc::new(GateAdapter::new(Arc::new(AtomicU64::new(0)), true, 0));
    let d = dispatcher(&h, adapter.clone(), config().with_concurrency(1));
    let entered = adapter.entered.notified();
    let batch = tokio::spawn(async move { d.dispatch_batch().await });
    tokio::time::timeout(StdDuration::from_secs(10), entered)
        .await
        .expect("the first send reaches the adapter");
    let first = adapter.calls()[0].1;
    let second: &OutboxMessage = messages
        .iter()
        .find(|m| m.id != first)
        .expect("two messages");
    let stopped = ok(
        h.store
            .add_suppression(&unsubscribe(&h, &second.recipient))
            .await,
        "add_suppression",
    )
    .stopped;
    assert_eq!(
        stopped.cancelled,
        vec![second.id],
        "the later message of the batch is cancelled: {stopped:?}"
    );
    assert!(stopped.in_flight.is_empty(), "{stopped:?}");
    // Suppressing the first recipient now reports its send as in flight.
    let first_message = messages.iter().find(|m| m.id == first).expect("first");
    let stopped = ok(
        h.store
            .add_suppression(&unsubscribe(&h, &first_message.recipient))
            .await,
        "add_suppression",
    )
    .stopped;
    assert_eq!(stopped.in_flight, vec![first], "{stopped:?}");
    assert!(stopped.cancelled.is_empty(), "{stopped:?}");
    if let Some(hold) = &adapter.hold {
        hold.add_permits(1);
    }
    let report = tokio::time::timeout(StdDuration::from_secs(10), batch)
        .await
        .expect("the batch ends")
        .expect("the batch task")
        .expect("dispatch_batch");
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(adapter.calls().len(), 1, "the second send never started");
    assert_eq!(h.get(second.id).await.status, OutboxStatus::Cancelled);
    assert_eq!(h.get(first).await.status, OutboxStatus::Sent);
}

/// Several dispatchers send while unsubscribes land at random moments; a shared
/// sequence orders unsubscribe returns and adapter calls. No adapter call may start
/// after an unsubscribe of its address returned unless that unsubscribe reported the
/// message in flight.
pub async fn dispatch_random_unsubscribes_never_race_a_send(store: Arc<DynStore>) {
    const ROUNDS: usize = 6;
    const ADDRESSES: usize = 12;
    const PER_ADDRESS: usize = 2;
    const DISPATCHERS: usize = 3;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ WorkspaceId::new().as_uuid().as_u64_pair().1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sent_total = 0;
    for _ in 0..ROUNDS {
        let h = Harness::new(store.clone());
        let seq = Arc::new(AtomicU64::new(0));
        let adapter = Arc::new(GateAdapter::new(seq.clone(), false, 2_000));
        let mut addresses = Vec::new();
        for _ in 0..ADDRESSES {
            let (contact, email) = h.contact().await;
            for _ in 0..PER_ADDRESS {
                h.enqueue_message(&h.message_to(&contact, &email)).await;
            }
            addresses.push(email);
        }
        let mut victims: Vec<(String, u64)> = Vec::new();
        for address in &addresses {
            if next() % 2 == 0 {
                victims.push((address.clone(), next() % 4_000));
            }
        }
        let tasks: Vec<_> = (0..DISPATCHERS)
            .map(|i| {
                let cfg = config()
                    .with_worker(format!("gate-{i}"))
                    .with_batch_size(4)
                    .with_concurrency(2);
                let d = dispatcher(&h, adapter.clone(), cfg);
                tokio::spawn(async move { drain(&d).await })
            })
            .collect();
        let unsubscribes: Vec<_> = victims
            .into_iter()
            .map(|(address, delay_us)| {
                let h = h.clone();
                let seq = seq.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(StdDuration::from_micros(delay_us)).await;
                    let stopped = ok(
                        h.store.add_suppression(&unsubscribe(&h, &address)).await,
                        "add_suppression",
                    )
                    .stopped;
                    let at = seq.fetch_add(1, Ordering::SeqCst);
                    (at, normalize_address(&address), stopped.in_flight)
                })
            })
            .collect();
        for task in tasks {
            let report = task.await.expect("a dispatcher panicked");
            sent_total += report.sent;
        }
        let mut returned: HashMap<String, Vec<(u64, Vec<OutboxMessageId>)>> = HashMap::new();
        for task in unsubscribes {
            let (at, address, in_flight) = task.await.expect("an unsubscribe panicked");
            returned.entry(address).or_default().push((at, in_flight));
        }
        for (started, id, address) in adapter.calls() {
            for (at, in_flight) in returned.get(&address).into_iter().flatten() {
                assert!(
                    *at > started || in_flight.contains(&id),
                    "message {id} started (seq {started}) after the unsubscribe of its \
                     address returned (seq {at}) without being reported in flight"
                );
            }
        }
    }
    assert!(sent_total > 0, "some messages were sent at all");
}

/// A dispatcher claims a batch and takes its quota units, then dies: its leases
/// expire unfinished and are reaped. With a cap equal to the number of messages,
/// another dispatcher still sends them all the same day: each re-claimed message
/// reuses its unit.
pub async fn dispatch_crash_after_taking_quota_leaks_no_unit(store: Arc<DynStore>) {
    const MESSAGES: u32 = 4;
    let h = Harness::new(store);
    let mut ids = Vec::new();
    for _ in 0..MESSAGES {
        ids.push(h.enqueue().await.id);
    }
    let settings = WorkspaceSettings::default().with_daily_cap(Channel::Email, MESSAGES);
    let now = h.clock_now();
    let claim = Claim::new(Scope::Workspace(h.ws), "doomed", now, lease_ttl(), 100);
    let claimed = ok(h.store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(claimed.len(), MESSAGES as usize);
    let starts: Vec<SendStart> = claimed
        .iter()
        .map(|m| SendStart {
            workspace_id: h.ws,
            outbox_id: m.id,
            lease_token: m.lease.as_ref().map_or(0, |l| l.token),
            contact_id: m.contact_id.expect("harness messages have a contact"),
            channel: m.channel,
            recipient: normalize_address(&m.recipient),
            quota_key: settings.send_quota_key(m.channel, now),
            cap: settings.daily_cap(m.channel),
            touch_limit: None,
        })
        .collect();
    let answers = ok(h.store.begin_sends(&starts, now).await, "begin_sends");
    assert!(answers.iter().all(SendStartOutcome::is_go), "{answers:?}");
    let key = settings.send_quota_key(Channel::Email, now);
    assert_eq!(
        ok(h.store.quota_usage(h.ws, &key).await, "quota_usage"),
        MESSAGES
    );

    // The worker dies; its leases run out and are reaped.
    h.clock
        .advance(lease_ttl() + MAX_CLOCK_SKEW + Duration::seconds(1));
    let adapter = Arc::new(GateAdapter::new(Arc::new(AtomicU64::new(0)), false, 0));
    let d = Dispatcher::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::new(settings)),
        ChannelRegistry::new().with(adapter.clone()),
        config().with_env_dry_run(false),
    )
    .with_policy(Arc::new(ApproveAll { rule: h.rule }));
    let reaped = d.reap_expired_leases().await.expect("reap");
    assert!(reaped >= u64::from(MESSAGES), "{reaped}");
    let report = drain(&d).await;
    assert_eq!(
        report.sent,
        u64::from(MESSAGES),
        "every message is sent the same day: {report:?}"
    );
    assert_eq!(report.postponed, 0, "{report:?}");
    assert_eq!(
        ok(h.store.quota_usage(h.ws, &key).await, "quota_usage"),
        MESSAGES,
        "each message used one unit"
    );
    for id in ids {
        assert_eq!(h.get(id).await.status, OutboxStatus::Sent);
    }
}
