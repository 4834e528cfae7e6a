//! The [`Engine`] started, used and shut down against a real store.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics naming the rule
//! it checks. The engine runs on a [`ManualClock`] standing at [`base`] with loops
//! polling every few milliseconds; cases observe only through the engine's handles,
//! the store's reads and a recording adapter ([`StubChannel`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::store::fixtures::{base, contact, new_sequence, ok};
use crm_core::clock::ManualClock;
use crm_core::engine::{Engine, EngineConfig, RunningEngine, StartError};
use crm_core::ids::{ApprovalItemId, UserId, WorkspaceId};
use crm_core::jobs::SYSTEM_WORKSPACE;
use crm_core::model::{
    Channel, JobStatus, OutboxMessage, OutboxStatus, Workspace, WorkspaceSettings,
};
use crm_core::outreach::approvals::{ApprovalInbox, StaticApprovers};
use crm_core::outreach::dispatch::{ChannelRegistry, StubChannel};
use crm_core::outreach::runner::RUNNER_LEASE;
use crm_core::store::{DynStore, Page};

/// Expands to one `#[tokio::test]` (multi-thread, 4 workers) per engine lifecycle
/// scenario and per end-to-end scenario ([`crate::engine::e2e`]), in a module named
/// `engine` (so `cargo test engine::` selects them).
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once
/// per test; it should return a fresh store.
#[macro_export]
macro_rules! engine_conformance_tests {
    ($make:path) => {
        $crate::__engine_cases!($crate::__engine_conformance_expand, $make);
    };
}

/// Expands the case list into tests; called back by [`__engine_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __engine_conformance_expand {
    ($make:path; $($module:ident :: $case:ident)*) => {
        mod engine {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    let store: ::std::sync::Arc<$crate::__core::DynStore> =
                        ::std::sync::Arc::new($make().await);
                    $crate::engine::$module::$case(store).await;
                }
            )*
        }
    };
}

/// The one list of engine scenarios. Calls `$callback!($($args)*; module::case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __engine_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            wake::an_enqueued_job_wakes_the_idle_worker
            wake::an_approved_message_wakes_the_idle_dispatcher
            engine_lifecycle::started_engine_sends_an_approved_step_and_drains_on_shutdown
            engine_lifecycle::shutdown_abandons_a_send_past_the_deadline_and_a_restart_finishes_it
            engine_lifecycle::run_due_drives_every_part_and_the_periodic_jobs
            engine_lifecycle::an_engine_runs_once_at_a_time
            e2e::csv_to_reply_through_real_adapters
        }
    };
}

/// Registers `ws` in the store's workspace registry with default settings (once):
/// what a host does when a tenant signs up. The engine reads its settings and lists
/// it from there.
pub(crate) async fn register(store: &DynStore, ws: WorkspaceId, settings: WorkspaceSettings) {
    if store.get_workspace(ws).await.is_ok() {
        return;
    }
    let workspace = Workspace::new(ws, "E2E workspace", settings, base()).expect("valid");
    ok(
        store.insert_workspace(&workspace).await,
        "register the workspace",
    );
}

/// The engine of a case: a manual clock at [`base`], `email` as the email adapter,
/// manual approval with `approver` allowed in `ws` (registered with default
/// settings), loops every 5 ms.
async fn engine(
    store: &Arc<DynStore>,
    clock: &ManualClock,
    email: &StubChannel,
    ws: WorkspaceId,
    approver: UserId,
    deadline: Duration,
) -> Engine {
    let config = EngineConfig::default()
        .with_poll_interval(Duration::from_millis(5))
        .with_shutdown_deadline(deadline);
    register(&**store, ws, WorkspaceSettings::default()).await;
    Engine::builder(store.clone())
        .clock(Arc::new(clock.clone()))
        .channel_registry(ChannelRegistry::new().with(Arc::new(email.clone())))
        .approvers(Arc::new(StaticApprovers::new().with_approver(ws, approver)))
        .config(config)
        .build()
        .expect("a valid engine")
}

/// Polls `check` every 5 ms until it answers `Some`, for up to 10 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..2000 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn messages(store: &DynStore, ws: WorkspaceId) -> Vec<OutboxMessage> {
    ok(
        store.list_outbox(ws, None, Page::first(100)).await,
        "list the outbox",
    )
}

/// Enrolls a fresh contact in a one-step email sequence that needs a person.
async fn enrolled(engine: &Engine, ws: WorkspaceId) {
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
}

/// Waits for the step's message to wait for approval, then approves it through the
/// inbox.
async fn approve_the_step(running: &RunningEngine, ws: WorkspaceId, approver: UserId) {
    let inbox = running.engine().inbox();
    let item = eventually("the step's message waits for approval", || async {
        let pending = inbox.list_pending(ws, Page::first(10)).await.ok()?;
        pending.into_iter().next()
    })
    .await;
    approve(inbox, ws, item.id, approver).await;
}

/// Approves `item` as `approver`, retrying while the dispatcher holds its message
/// (`MessageBusy` is retryable: a host's approve button retries the same way).
pub(crate) async fn approve(
    inbox: &ApprovalInbox,
    ws: WorkspaceId,
    item: ApprovalItemId,
    approver: UserId,
) {
    for _ in 0..2000 {
        match inbox.approve(ws, item, approver).await {
            Ok(_) => return,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("the approver may approve: {e}"),
        }
    }
    panic!("the approval item's message stayed busy");
}

/// No outbox message of `ws` and no job anywhere holds a lease, and the runner's lease
/// of `ws` is free for another holder.
async fn no_leases_left(engine: &Engine, ws: WorkspaceId) {
    let store = &**engine.store();
    for m in messages(store, ws).await {
        assert!(m.lease.is_none(), "message {} still holds a lease", m.id);
    }
    for space in [ws, SYSTEM_WORKSPACE] {
        let running = store
            .list_jobs(space, Some(JobStatus::Running), Page::first(100))
            .await;
        assert_eq!(
            ok(running, "list running jobs"),
            vec![],
            "no job is left running"
        );
    }
    let taken = store
        .try_acquire_lease(
            ws,
            RUNNER_LEASE,
            "another-process",
            chrono::Duration::minutes(1),
            engine.clock().now(),
        )
        .await;
    assert!(
        ok(taken, "take the runner lease").is_some(),
        "the runner's workspace lease was released"
    );
}

/// Started on a manual clock, the engine runs the enrollment's step, holds it for a
/// person, sends it once approved through the adapter with the outbox id as key, and a
/// shutdown asked while the (slow) send is in flight lets it finish and be recorded
/// within the deadline, leaving no lease behind.
pub async fn started_engine_sends_an_approved_step_and_drains_on_shutdown(store: Arc<DynStore>) {
    let (ws, clock) = (WorkspaceId::new(), ManualClock::new(base()));
    let email = StubChannel::ok(Channel::Email).with_latency(Some(Duration::from_millis(300)));
    let approver = UserId::new();
    let engine = engine(&store, &clock, &email, ws, approver, Duration::from_secs(5)).await;
    enrolled(&engine, ws).await;

    let running = engine.start().expect("the engine starts");
    approve_the_step(&running, ws, approver).await;
    eventually("the adapter is handed the message", || async {
        (email.handed_count() > 0).then_some(())
    })
    .await;
    // The send is in flight: the stub delivered and answers 300 ms later.
    let report = running.shutdown().await;

    assert!(report.is_clean(), "no loop missed the deadline: {report:?}");
    assert_eq!(report.dispatched.sent, 1, "the in-flight send was recorded");
    assert_eq!(report.dispatched.held_for_approval, 1);
    assert!(report.runner_ticks > 0);
    let sent = messages(&*store, ws).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, OutboxStatus::Sent, "recorded as sent");
    let key = sent[0].id.to_string();
    assert_eq!(email.handed(&key), 1, "sent once, keyed by its outbox id");
    assert!(email.was_delivered(&key));
    no_leases_left(&engine, ws).await;
}

/// A send slower than the shutdown deadline is abandoned (the report names the
/// dispatcher) and its message stays leased; once the lease has expired, the next
/// engine reaps it and sends again under the same key, which the provider
/// deduplicates: the contact gets one message.
pub async fn shutdown_abandons_a_send_past_the_deadline_and_a_restart_finishes_it(
    store: Arc<DynStore>,
) {
    let (ws, clock) = (WorkspaceId::new(), ManualClock::new(base()));
    let slow = StubChannel::ok(Channel::Email).with_latency(Some(Duration::from_secs(30)));
    let approver = UserId::new();
    let engine = engine(
        &store,
        &clock,
        &slow,
        ws,
        approver,
        Duration::from_millis(200),
    )
    .await;
    enrolled(&engine, ws).await;
    let running = engine.start().expect("the engine starts");
    approve_the_step(&running, ws, approver).await;
    eventually("the adapter is handed the message", || async {
        (slow.handed_count() > 0).then_some(())
    })
    .await;
    let report = running.shutdown().await;
    // Only the dispatcher is busy past the deadline; on a loaded machine an idle loop
    // may also miss a 200 ms deadline, which is not what this case is about.
    assert!(report.abandoned.contains(&"dispatcher"), "{report:?}");
    let stuck = messages(&*store, ws).await;
    assert_eq!(stuck[0].status, OutboxStatus::InFlight, "{stuck:?}");

    // Past the lease and the tolerated clock skew, a new engine takes over.
    clock.advance(chrono::Duration::minutes(10));
    let fast = slow.clone().with_latency(None);
    let again = self::engine(&store, &clock, &fast, ws, approver, Duration::from_secs(5)).await;
    let step = again.run_due().await.expect("one pass");
    assert_eq!(step.dispatched.sent, 1, "{step:?}");
    let key = stuck[0].id.to_string();
    assert_eq!(fast.handed(&key), 2, "handed twice under one key");
    assert_eq!(fast.delivered_count(), 1, "delivered once");
    no_leases_left(&again, ws).await;
}

/// [`Engine::run_due`] ticks the scheduler (the built-in periodic jobs), routes the
/// events the store appended, ticks the runner, the dispatcher and the worker at the
/// clock's now; the periodic and routed jobs run on the engine's own worker.
pub async fn run_due_drives_every_part_and_the_periodic_jobs(store: Arc<DynStore>) {
    let (ws, clock) = (WorkspaceId::new(), ManualClock::new(base()));
    let email = StubChannel::ok(Channel::Email);
    let engine = engine(
        &store,
        &clock,
        &email,
        ws,
        UserId::new(),
        Duration::from_secs(5),
    )
    .await;
    enrolled(&engine, ws).await;

    // 09:00:00 is an instant of the approval expiry (every minute) and of the anomaly
    // scan (every five minutes).
    let step = engine.run_due().await.expect("one pass");
    assert_eq!(step.periodic_enqueued, 2, "{step:?}");
    assert_eq!(step.runner.enqueued(), 1, "the step's message is queued");
    assert_eq!(
        step.dispatched.held_for_approval, 1,
        "and held for a person"
    );
    let done = store
        .list_jobs(
            SYSTEM_WORKSPACE,
            Some(JobStatus::Succeeded),
            Page::first(10),
        )
        .await;
    let mut kinds: Vec<_> = ok(done, "list jobs").into_iter().map(|j| j.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["anomalies.scan", "approvals.expire"],
        "both periodic jobs ran"
    );
    // The store appended `contact.created` with the contact; the router turned it into
    // a rescore of the contact, which the worker ran.
    assert!(step.events_routed > 0, "{step:?}");
    let done = store
        .list_jobs(ws, Some(JobStatus::Succeeded), Page::first(10))
        .await;
    let kinds: Vec<_> = ok(done, "list jobs").into_iter().map(|j| j.kind).collect();
    assert_eq!(kinds, ["scoring.rescore_contact"], "the routed job ran");
    assert_eq!(step.jobs.succeeded, 3, "{step:?}");

    let again = engine.run_due().await.expect("a second pass");
    assert_eq!(again.periodic_enqueued, 0, "each instant is enqueued once");
    assert_eq!(again.dispatched.claimed, 0, "nothing more is due");
    assert_eq!(email.handed_count(), 0, "nothing went out unapproved");
}

/// A second start of a running engine (or a clone) is refused; after shutdown it
/// starts again.
pub async fn an_engine_runs_once_at_a_time(store: Arc<DynStore>) {
    let (ws, clock) = (WorkspaceId::new(), ManualClock::new(base()));
    let email = StubChannel::ok(Channel::Email);
    let engine = engine(
        &store,
        &clock,
        &email,
        ws,
        UserId::new(),
        Duration::from_secs(5),
    )
    .await;
    let running = engine.start().expect("the engine starts");
    let clone = engine.clone();
    assert!(matches!(clone.start(), Err(StartError::AlreadyRunning)));
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.errors + report.panics, 0, "{report:?}");
    let restarted = clone.start().expect("a stopped engine starts again");
    assert!(restarted.shutdown().await.is_clean());
}
