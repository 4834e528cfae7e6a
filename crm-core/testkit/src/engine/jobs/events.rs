//! Event bus and scheduler scenarios.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use futures::future::join_all;
use serde_json::json;

use super::{clock, jobs_with, test_config};
use crate::store::fixtures::{approval, base, ok, unique};
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{
    EXPIRE_APPROVALS, EventBus, EventRoutes, ExpireApprovalsHandler, HandlerRegistry, PeriodicJob,
    SYSTEM_WORKSPACE, Scheduler, Worker,
};
use crm_core::model::{ApprovalStatus, JobStatus, NewEvent, OutboxStatus};
use crm_core::outreach::approvals::{ApprovalInbox, StaticApprovers};
use crm_core::store::{JobStore, Scope};

/// Publishing an event appends it and enqueues each mapped job once, keyed
/// `"{event_id}:{job_kind}"`; republishing (even concurrently) enqueues nothing more.
pub async fn publish_enqueues_mapped_jobs_once(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let (_manual, clock) = clock();
    let routes = EventRoutes::new()
        .route("contact.created", "scoring.recompute")
        .route_with(
            "contact.created",
            "enrich.contact",
            |e| json!({ "contact": e.subject }),
        );
    let bus = EventBus::new(store.clone(), routes, clock);
    let key = unique("event");
    let event =
        NewEvent::new(ws, "contact.created", "c-1", json!({}), &key, base()).expect("valid event");

    let first = ok(bus.publish(&event).await, "publish");
    assert!(first.created, "the first publish appends the event");
    let jobs = jobs_with(&*store, ws, None).await;
    let mut keys: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{}:enrich.contact", event.id),
            format!("{}:scoring.recompute", event.id)
        ]
    );
    let enrich = jobs
        .iter()
        .find(|j| j.kind == "enrich.contact")
        .expect("enrich job");
    assert_eq!(enrich.payload, json!({ "contact": "c-1" }));
    let scoring = jobs
        .iter()
        .find(|j| j.kind == "scoring.recompute")
        .expect("scoring job");
    assert_eq!(scoring.payload["event_id"], json!(event.id));

    let retries = join_all((0..8).map(|_| {
        let again = NewEvent::new(ws, "contact.created", "c-1", json!({}), &key, base())
            .expect("valid event");
        let bus = bus.clone();
        async move { ok(bus.publish(&again).await, "republish") }
    }))
    .await;
    assert!(retries.iter().all(|r| !r.created && r.value.id == event.id));
    assert_eq!(jobs_with(&*store, ws, None).await.len(), 2, "no job twice");

    let unrouted = NewEvent::new(ws, "deal.won", "d-1", json!({}), unique("event"), base())
        .expect("valid event");
    assert!(ok(bus.publish(&unrouted).await, "publish unrouted").created);
    assert_eq!(
        jobs_with(&*store, ws, None).await.len(),
        2,
        "no route, no job"
    );
}

/// Two schedulers ticking the same periodic job concurrently enqueue each scheduled
/// instant once; a later tick enqueues only the new instant.
pub async fn schedulers_enqueue_each_instant_once(store: Arc<DynStore>) {
    let (manual, clock) = clock();
    let every_minute = PeriodicJob::new("engine.periodic", "0 * * * * *").expect("valid cron");
    let jobs: Arc<dyn JobStore> = store.clone();
    let make = || {
        Scheduler::new(
            jobs.clone(),
            clock.clone(),
            vec![every_minute.clone()],
            Duration::from_secs(60),
        )
        .expect("valid scheduler")
    };
    let (a, b) = (make(), make());
    manual.set(base() + Span::seconds(30));
    let reports = join_all((0..8).map(|i| {
        let scheduler = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { ok(scheduler.tick().await, "tick") }
    }))
    .await;
    let enqueued: usize = reports.iter().map(|r| r.enqueued.len()).sum();
    assert_eq!(
        enqueued, 2,
        "two instants in the 2-minute lookback, each once"
    );
    let stored = jobs_with(&*store, SYSTEM_WORKSPACE, None).await;
    let mut keys: Vec<_> = stored
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "engine.periodic@2026-01-05T08:59:00Z",
            "engine.periodic@2026-01-05T09:00:00Z"
        ]
    );

    manual.set(base() + Span::seconds(61));
    let later = ok(b.tick().await, "later tick");
    assert_eq!(later.enqueued.len(), 1, "only the new instant");
    assert_eq!(
        later.already_enqueued, 1,
        "the previous instant is still in the window"
    );
    assert_eq!(later.enqueued[0].run_at, base() + Span::seconds(60));
    assert_eq!(jobs_with(&*store, SYSTEM_WORKSPACE, None).await.len(), 3);
}

/// The `approvals.expire` periodic job, run by a worker, expires due approval items of
/// every workspace and cancels their messages.
pub async fn periodic_expiry_expires_approvals_and_cancels_messages(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let due = approval(&*store, ws, base() + Span::minutes(1)).await;
    let later = approval(&*store, ws, base() + Span::days(1)).await;
    let (manual, clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let expiry = PeriodicJob::new(EXPIRE_APPROVALS, "0 */5 * * * *").expect("valid cron");
    let scheduler = Scheduler::new(
        jobs.clone(),
        clock.clone(),
        vec![expiry],
        Duration::from_secs(60),
    )
    .expect("valid scheduler");
    let inbox = ApprovalInbox::new(
        store.clone(),
        clock.clone(),
        Arc::new(StaticApprovers::new()),
    );
    let registry = HandlerRegistry::new().with(
        EXPIRE_APPROVALS,
        Arc::new(ExpireApprovalsHandler::new(inbox)),
    );
    let worker = Worker::new(
        jobs,
        registry,
        clock,
        test_config(ws).with_scope(Scope::All),
    );

    let now = manual.advance(Span::minutes(5));
    let report = ok(scheduler.tick().await, "tick");
    assert_eq!(report.enqueued.len(), 1, "one run at 09:05");
    let stats = ok(worker.drain().await, "drain");
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    let expired = ok(store.get_approval(ws, due.id).await, "get_approval");
    assert_eq!(expired.status, ApprovalStatus::Expired);
    let message = ok(
        store.get_outbox(ws, due.outbox_message_id).await,
        "get_outbox",
    );
    assert_eq!(
        message.status,
        OutboxStatus::Cancelled,
        "the expired item's message"
    );
    let pending = ok(store.get_approval(ws, later.id).await, "get_approval");
    assert_eq!(pending.status, ApprovalStatus::Pending, "not due yet");
    let done = jobs_with(&*store, SYSTEM_WORKSPACE, Some(JobStatus::Succeeded)).await;
    assert_eq!(done.len(), 1);
    assert_eq!(manual.now(), now);
}
