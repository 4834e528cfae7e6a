//! Scenarios of the send itself: once, concurrently, within quota, dry-run, restarts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;

use super::{Harness, config, drain, enqueue_many, once};
use crate::store::fixtures::ok;
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::model::{ActivityKind, ApprovalStatus, Channel, OutboxStatus};
use crm_core::outreach::dispatch::DispatchReport;
use crm_core::outreach::schedule::start_of_next_day;
use crm_core::outreach::settings::{Allowlist, WorkspaceSettings};
use crm_core::store::ApprovalStoreExt;
use crm_core::store::{ActivityFilter, MAX_CLOCK_SKEW, QuotaKey};

fn sent_activities() -> ActivityFilter {
    ActivityFilter {
        kinds: vec![ActivityKind::MessageSent],
        ..ActivityFilter::default()
    }
}

/// A due message goes to the adapter once, with its outbox id as idempotency key; it
/// ends `Sent` with the provider id, and a `MessageSent` activity and an approved item
/// naming the policy's rule are recorded.
pub async fn dispatch_sends_once_and_records_the_activity(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (contact, email) = h.contact().await;
    let message = h.enqueue_message(&h.message_to(&contact, &email)).await;
    let dispatcher = h.dispatcher();

    let report = once(&dispatcher).await;
    assert_eq!(
        (report.claimed, report.sent),
        (1, 1),
        "one claim, one send: {report:?}"
    );
    let delivered = h.stub.delivered();
    assert_eq!(delivered.len(), 1, "the adapter received the message");
    assert_eq!(
        delivered[0].idempotency_key(),
        message.id.to_string(),
        "the outbox id is the idempotency key"
    );
    assert_eq!(delivered[0].body, message.body);
    assert_eq!(delivered[0].recipient, email);

    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Sent);
    assert_eq!(stored.sent_at, Some(h.clock.now()));
    assert_eq!(
        stored.provider_message_id,
        Some(format!("stub:{}", message.id))
    );
    assert!(stored.lease.is_none(), "a sent message holds no lease");

    let filter = ActivityFilter {
        contact_id: Some(contact.id),
        ..sent_activities()
    };
    let activities = ok(
        h.store.list_activities(h.ws, &filter, 10).await,
        "list_activities",
    );
    assert_eq!(activities.len(), 1, "one MessageSent activity per send");
    assert_eq!(activities[0].outbox_message_id, Some(message.id));
    assert_eq!(activities[0].channel, Some(Channel::Email));

    let item = ok(
        h.store.find_approval_for_outbox(h.ws, message.id).await,
        "find_approval_for_outbox",
    )
    .expect("auto-approval leaves an item as audit trail");
    assert_eq!(item.status, ApprovalStatus::Approved);
    assert_eq!(item.decided_by_rule, Some(h.rule));

    let again = once(&dispatcher).await;
    assert_eq!(again.claimed, 0, "a sent message is not claimed again");
    assert_eq!(h.stub.handed_count(), 1);
}

/// 8 dispatchers draining 10,000 messages at once hand each message to the adapter
/// exactly once.
pub async fn dispatch_concurrent_dispatchers_hand_each_message_over_once(store: Arc<DynStore>) {
    const MESSAGES: usize = 10_000;
    const DISPATCHERS: usize = 8;
    let h = Harness::new(store);
    let mut contacts = Vec::new();
    for _ in 0..20 {
        contacts.push(h.contact().await);
    }
    enqueue_many(&h, &contacts, MESSAGES).await;
    let settings = WorkspaceSettings::default().with_daily_cap(Channel::Email, 1_000_000);

    let tasks: Vec<_> = (0..DISPATCHERS)
        .map(|i| {
            let cfg = config()
                .with_worker(format!("dispatcher-{i}"))
                .with_batch_size(100)
                .with_concurrency(16);
            let dispatcher = h.dispatcher_with(&h.stub, settings.clone(), cfg);
            tokio::spawn(async move { drain(&dispatcher).await })
        })
        .collect();
    let mut total = DispatchReport::default();
    for task in tasks {
        total.merge(&task.await.expect("a dispatcher task panicked"));
    }

    assert_eq!(total.sent, MESSAGES as u64, "every message sent: {total:?}");
    assert_eq!(
        total.claimed, MESSAGES as u64,
        "no message claimed twice: {total:?}"
    );
    let handed = h.stub.handed_per_key();
    assert_eq!(handed.len(), MESSAGES, "every message reached the adapter");
    assert!(
        handed.values().all(|&n| n == 1),
        "no message was handed to the adapter twice"
    );
    assert_eq!(h.stub.handed_count(), MESSAGES as u64);
    let sent = h.with_status(OutboxStatus::Sent).await;
    assert_eq!(sent.len(), MESSAGES, "every message ends Sent");
    let keys: HashSet<String> = sent.iter().map(|m| m.id.to_string()).collect();
    assert!(keys.iter().all(|k| handed.contains_key(k)));
    let activities = ok(
        h.store.count_activities(h.ws, &sent_activities()).await,
        "count_activities",
    );
    assert_eq!(activities, MESSAGES as u64, "one activity per send");
}

/// With a daily cap of 25, concurrent dispatchers send 25 of 60 messages; the rest are
/// postponed to the start of the next day with their attempt given back, not failed.
pub async fn dispatch_quota_is_never_exceeded_and_overflow_waits_a_day(store: Arc<DynStore>) {
    const CAP: u32 = 25;
    let h = Harness::new(store);
    let contacts = vec![h.contact().await, h.contact().await];
    enqueue_many(&h, &contacts, 60).await;
    let settings = WorkspaceSettings::default().with_daily_cap(Channel::Email, CAP);
    let dispatchers: Vec<_> = (0..4)
        .map(|i| {
            let cfg = config()
                .with_worker(format!("dispatcher-{i}"))
                .with_batch_size(10);
            Arc::new(h.dispatcher_with(&h.stub, settings.clone(), cfg))
        })
        .collect();
    let run_all = || {
        let tasks: Vec<_> = dispatchers
            .iter()
            .map(|d| {
                let d = d.clone();
                tokio::spawn(async move { drain(&d).await })
            })
            .collect();
        async move {
            let mut total = DispatchReport::default();
            for task in tasks {
                total.merge(&task.await.expect("a dispatcher task panicked"));
            }
            total
        }
    };

    let today = run_all().await;
    assert_eq!(
        today.sent,
        u64::from(CAP),
        "exactly the cap is sent: {today:?}"
    );
    assert_eq!(today.postponed, 35, "the overflow is postponed: {today:?}");
    assert_eq!(
        h.stub.delivered_count(),
        CAP as usize,
        "the adapter saw the cap, no more"
    );
    let day = h.clock.now().date_naive();
    let usage = ok(
        h.store
            .quota_usage(h.ws, &QuotaKey::new("send:email", day))
            .await,
        "quota_usage",
    );
    assert_eq!(usage, CAP, "the quota counter equals the sends");
    let tomorrow = start_of_next_day(chrono_tz::Tz::UTC, day);
    let waiting = h.with_status(OutboxStatus::Pending).await;
    assert_eq!(
        waiting.len(),
        35,
        "the overflow stays pending, never failed"
    );
    for m in &waiting {
        assert_eq!(m.not_before, tomorrow, "postponed to the next day's start");
        assert_eq!(m.attempts, 0, "a postponement gives the attempt back");
        assert!(m.last_error.as_deref().is_some_and(|e| e.contains("quota")));
    }

    h.clock.set(tomorrow);
    let next = run_all().await;
    assert_eq!(
        next.sent,
        u64::from(CAP),
        "the next day sends up to the cap again"
    );
    assert_eq!(h.stub.delivered_count(), 2 * CAP as usize);
    assert_eq!(h.with_status(OutboxStatus::Pending).await.len(), 10);
}

/// Dry-run forced by configuration records the message in the dry-run adapter, marks it
/// sent, and never calls the real adapter.
pub async fn dispatch_dry_run_by_config_sends_nothing_for_real(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let dispatcher = h.dispatcher_with(
        &h.stub,
        WorkspaceSettings::default(),
        config().with_dry_run(true),
    );
    assert!(dispatcher.forces_dry_run());
    let report = once(&dispatcher).await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(
        h.stub.handed_count(),
        0,
        "the real adapter is never called in dry-run"
    );
    let recorded = dispatcher.dry_run_channel().sent();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].id, message.id);
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Sent);
    assert_eq!(
        stored.provider_message_id,
        Some(format!("dry-run:{}", message.id))
    );
}

/// A workspace allowlist applies in dry-run too: the listed recipient is (dry-)sent,
/// the other is cancelled.
pub async fn dispatch_allowlist_is_enforced_in_dry_run(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (listed, listed_email) = h.contact().await;
    let (other, other_email) = h.contact().await;
    let allowed = h
        .enqueue_message(&h.message_to(&listed, &listed_email))
        .await;
    let blocked = h.enqueue_message(&h.message_to(&other, &other_email)).await;
    let settings = WorkspaceSettings::default()
        .with_dry_run(true)
        .with_allowlist(Allowlist::new().with_address(&listed_email.to_uppercase()));
    let dispatcher = h.dispatcher_with(&h.stub, settings, config());

    let report = once(&dispatcher).await;
    assert_eq!((report.sent, report.cancelled), (1, 1), "{report:?}");
    assert_eq!(h.get(allowed.id).await.status, OutboxStatus::Sent);
    let stopped = h.get(blocked.id).await;
    assert_eq!(stopped.status, OutboxStatus::Cancelled);
    assert!(
        stopped
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("allowlist")),
        "the reason names the allowlist: {:?}",
        stopped.last_error
    );
    assert_eq!(h.stub.handed_count(), 0, "dry-run from the settings");
    assert_eq!(dispatcher.dry_run_channel().len(), 1);
}

/// A dispatcher stopped while the provider is answering, then reaped and replaced,
/// delivers every message exactly once (the provider deduplicates by the outbox id)
/// and records each send once.
pub async fn dispatch_stopped_mid_batch_sends_nothing_twice(store: Arc<DynStore>) {
    const MESSAGES: usize = 40;
    let h = Harness::new(store);
    let contacts = vec![h.contact().await];
    enqueue_many(&h, &contacts, MESSAGES).await;
    let slow = h
        .stub
        .clone()
        .with_latency(Some(StdDuration::from_millis(300)));
    let cfg = config().with_batch_size(40).with_concurrency(8);
    let first = h.dispatcher_with(&slow, WorkspaceSettings::default(), cfg.clone());
    let task = tokio::spawn(async move { first.dispatch_batch().await });
    for _ in 0..1000 {
        if h.stub.delivered_count() >= 8 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert!(
        h.stub.delivered_count() >= 8,
        "the slow provider got the first wave"
    );
    task.abort();
    assert!(
        task.await.is_err(),
        "the first dispatcher was stopped mid-batch"
    );
    let delivered_before = h.stub.delivered_count();
    assert!(
        delivered_before < MESSAGES,
        "stopped before the batch finished"
    );

    h.clock
        .advance(cfg.lease_ttl() + MAX_CLOCK_SKEW + Duration::seconds(1));
    let second = h.dispatcher_with(&h.stub, WorkspaceSettings::default(), cfg);
    let reaped = second.reap_expired_leases().await.expect("reap");
    assert!(
        reaped > 0,
        "the stopped dispatcher's leases expired and were reaped"
    );
    let report = drain(&second).await;
    assert_eq!(report.left_to_expire, 0, "{report:?}");

    let sent = h.with_status(OutboxStatus::Sent).await;
    assert_eq!(sent.len(), MESSAGES, "every message ends Sent");
    let handed = h.stub.handed_per_key();
    for m in &sent {
        let key = m.id.to_string();
        assert!(h.stub.was_delivered(&key), "message {key} was delivered");
        assert!(
            handed.get(&key).copied().unwrap_or(0) <= 2,
            "a message is handed over at most once per claim"
        );
    }
    assert_eq!(
        h.stub.delivered_count(),
        MESSAGES,
        "the provider delivered each message once"
    );
    let resent = handed.values().filter(|&&n| n == 2).count();
    assert!(
        resent <= delivered_before,
        "only messages in flight at the stop were handed over again"
    );
    let activities = ok(
        h.store.count_activities(h.ws, &sent_activities()).await,
        "count_activities",
    );
    assert_eq!(activities, MESSAGES as u64, "each send recorded once");
}

/// `run` keeps dispatching until shutdown is signalled, then returns.
pub async fn dispatch_run_stops_on_shutdown(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let contacts = vec![h.contact().await];
    enqueue_many(&h, &contacts, 5).await;
    let cfg = config()
        .with_batch_size(2)
        .with_idle_sleep(Duration::milliseconds(10));
    let dispatcher = h.dispatcher_with(&h.stub, WorkspaceSettings::default(), cfg);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { dispatcher.run(shutdown).await });
    for _ in 0..1000 {
        if h.stub.delivered_count() == 5 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(h.stub.delivered_count(), 5, "run sends every due message");
    stop.send(true).expect("the dispatcher listens");
    tokio::time::timeout(StdDuration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .expect("run does not panic");
    assert_eq!(h.with_status(OutboxStatus::Sent).await.len(), 5);
}
