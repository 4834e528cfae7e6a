//! Wake on arrival: a started engine whose loops poll only every 30 s still starts a
//! job, a job falling due and an approved message within a fraction of a second,
//! because the store's [`Wakeups`](crm_core::store::Wakeups) signal its worker and
//! dispatcher.
//!
//! The bounds are generous (a second, on a loaded machine) against a 30 s poll: a
//! missing signal fails the case; the measured latencies are printed.

// These cases measure real latency against the system's time (jobs are due by it).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::engine_lifecycle::{approve, eventually, register};
use crate::store::fixtures::{base, contact, created, new_sequence};
use crm_core::clock::ManualClock;
use crm_core::engine::{Engine, EngineConfig};
use crm_core::ids::{UserId, WorkspaceId};
use crm_core::jobs::{JobContext, JobError, JobHandler};
use crm_core::model::{Channel, Job, WorkspaceSettings};
use crm_core::outreach::approvals::StaticApprovers;
use crm_core::outreach::dispatch::{ChannelRegistry, StubChannel};
use crm_core::store::{DynStore, Page};

/// The poll of every loop: far longer than any bound below.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How long a signalled start may take on a loaded test machine.
const BOUND: Duration = Duration::from_secs(1);
const KIND: &str = "wake.probe";

/// Sends the instant each job started.
#[derive(Debug)]
struct Probe(mpsc::UnboundedSender<Instant>);

#[async_trait]
impl JobHandler for Probe {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let _ = self.0.send(Instant::now());
        Ok(())
    }
}

fn long_poll() -> EngineConfig {
    EngineConfig::default()
        .with_poll_interval(LONG_POLL)
        .with_shutdown_deadline(Duration::from_secs(5))
}

async fn started(rx: &mut mpsc::UnboundedReceiver<Instant>, what: &str) -> Instant {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(at)) => at,
        _ => panic!("{what}: the job never started (its signal was lost)"),
    }
}

/// A job enqueued while the worker idles on a 30 s poll starts at once, every time;
/// a job enqueued to start 400 ms later starts when it falls due, not at the poll.
pub async fn an_enqueued_job_wakes_the_idle_worker(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    register(&*store, ws, WorkspaceSettings::default()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::builder(store.clone())
        .job_handler(KIND, Arc::new(Probe(tx)))
        .config(long_poll())
        .build()
        .expect("a valid engine");
    let running = engine.start().expect("the engine starts");
    // Let every loop make its first (empty) claim and go idle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut latencies = Vec::new();
    for i in 0..5 {
        let job = Job::new(ws, KIND, json!({ "i": i }), Utc::now()).expect("valid job");
        let enqueued = Instant::now();
        created(store.enqueue_job(&job).await, "enqueue_job");
        let at = started(&mut rx, "a job enqueued now").await;
        latencies.push(at.saturating_duration_since(enqueued));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "enqueue to start on {}: {latencies:?}",
        store.backend_name()
    );
    for latency in &latencies {
        assert!(
            *latency < BOUND,
            "an enqueued job woke the idle worker: {latencies:?} (poll {LONG_POLL:?})"
        );
    }

    let delay = Duration::from_millis(400);
    let due = Utc::now() + chrono::Duration::from_std(delay).expect("small");
    let job = Job::new(ws, KIND, json!({ "later": true }), due).expect("valid job");
    let enqueued = Instant::now();
    created(store.enqueue_job(&job).await, "enqueue_job");
    let at = started(&mut rx, "a job due later").await;
    let waited = at.saturating_duration_since(enqueued);
    println!("a job due in {delay:?} started after {waited:?}");
    assert!(
        waited + Duration::from_millis(5) >= delay,
        "not before it was due"
    );
    assert!(
        waited < delay + BOUND,
        "a job falling due woke the idle worker: {waited:?} (poll {LONG_POLL:?})"
    );
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

/// A message approved through the inbox while the dispatcher idles on a 30 s poll is
/// handed to the adapter at once.
pub async fn an_approved_message_wakes_the_idle_dispatcher(store: Arc<DynStore>) {
    let (ws, clock) = (WorkspaceId::new(), ManualClock::new(base()));
    let email = StubChannel::ok(Channel::Email);
    let approver = UserId::new();
    register(&*store, ws, WorkspaceSettings::default()).await;
    let engine = Engine::builder(store.clone())
        .clock(Arc::new(clock.clone()))
        .channel_registry(ChannelRegistry::new().with(Arc::new(email.clone())))
        .approvers(Arc::new(StaticApprovers::new().with_approver(ws, approver)))
        .config(long_poll())
        .build()
        .expect("a valid engine");
    let contact = contact(&**engine.store(), ws).await;
    let sequence = engine
        .sequences()
        .create(&new_sequence(ws))
        .await
        .expect("the sequence is saved");
    engine
        .enroller()
        .enroll(ws, contact.id, sequence.id)
        .await
        .expect("the contact is enrolled");

    let running = engine.start().expect("the engine starts");
    // The runner's first tick enqueues the step's message, which wakes the dispatcher
    // to hold it for a person: no poll in between.
    let inbox = running.engine().inbox();
    let item = eventually("the step's message waits for approval", || async {
        let pending = inbox.list_pending(ws, Page::first(10)).await.ok()?;
        pending.into_iter().next()
    })
    .await;
    // The dispatcher is idle again, for 30 s unless something wakes it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    approve(inbox, ws, item.id, approver).await;
    let approved = Instant::now();
    eventually("the adapter is handed the approved message", || async {
        (email.handed_count() > 0).then_some(())
    })
    .await;
    let latency = approved.elapsed();
    println!(
        "approve to provider call on {}: {latency:?}",
        store.backend_name()
    );
    assert!(
        latency < BOUND,
        "the approval woke the idle dispatcher: {latency:?} (poll {LONG_POLL:?})"
    );
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.dispatched.sent, 1, "{report:?}");
}
