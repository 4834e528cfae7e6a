//! Worker scenarios: exactly-once processing, backoff, dead letters, reaping, shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use futures::future::join_all;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::{Behaviour, Recorder, clock, eventually, jobs_with, test_config};
use crate::store::fixtures::{base, created, ok};
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{HandlerRegistry, JobError, Worker};
use crm_core::model::{Job, JobStatus};
use crm_core::store::{Claim, JobStore, MAX_CLOCK_SKEW, Scope};

const KIND: &str = "engine.record";

fn job(ws: WorkspaceId, kind: &str, max_attempts: i32) -> Job {
    Job::new(ws, kind, json!({ "n": 1 }), base())
        .expect("valid job")
        .with_max_attempts(max_attempts)
}

async fn enqueue(store: &DynStore, job: &Job) -> Job {
    created(store.enqueue_job(job).await, "enqueue_job")
}

fn worker(
    store: &Arc<DynStore>,
    registry: HandlerRegistry,
    ws: WorkspaceId,
) -> (Worker, crm_core::ManualClock) {
    let (manual, clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    (Worker::new(jobs, registry, clock, test_config(ws)), manual)
}

/// A worker with four jobs in flight processes 500 jobs: every job runs exactly once and ends `Succeeded`.
pub async fn worker_runs_each_job_exactly_once(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    for chunk in (0..500).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<Job> = chunk.iter().map(|_| job(ws, KIND, 3)).collect();
        join_all(batch.iter().map(|j| enqueue(&*store, j))).await;
    }
    let recorder = Recorder::new(Behaviour::Succeed);
    let (worker, _clock) = worker(
        &store,
        HandlerRegistry::new().with(KIND, recorder.clone()),
        ws,
    );
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(shutdown).await }
    });
    eventually("the recorder saw 500 jobs", || {
        let seen = recorder.runs().len();
        async move { seen >= 500 }
    })
    .await;
    stop.send(true).expect("worker listens");
    let stats = running.await.expect("worker task");
    let runs = recorder.runs();
    assert_eq!(runs.len(), 500, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice: {runs:?}");
    assert_eq!((stats.claimed, stats.succeeded), (500, 500), "{stats:?}");
    let succeeded = jobs_with(&*store, ws, Some(JobStatus::Succeeded)).await;
    assert_eq!(succeeded.len(), 500, "every job is stored as succeeded");
}

/// A retryable failure puts the job back at `now + backoff(attempts)` (or exactly
/// `retry_after`), and at its last attempt the job goes dead with the reason.
pub async fn retryable_failures_back_off_then_dead_letter(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let failing = Recorder::new(Behaviour::Fail(JobError::retryable("smtp timeout")));
    let limited = Recorder::new(Behaviour::Fail(JobError::retry_after(
        "rate limited",
        Duration::from_secs(90),
    )));
    let registry = HandlerRegistry::new()
        .with(KIND, failing)
        .with("engine.limited", limited);
    let (clock, dyn_clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let config = test_config(ws).with_backoff(Duration::from_secs(10), Duration::from_secs(3600));
    let worker = Worker::new(jobs, registry, dyn_clock, config);
    let retried = enqueue(&*store, &job(ws, KIND, 3)).await;
    let limited = enqueue(&*store, &job(ws, "engine.limited", 3)).await;

    let stats = ok(worker.drain().await, "drain");
    assert_eq!((stats.claimed, stats.retried), (2, 2), "{stats:?}");
    let now = base();
    let after_one = ok(store.get_job(ws, retried.id).await, "get_job");
    assert_eq!(after_one.status, JobStatus::Queued);
    assert_eq!(after_one.attempts, 1);
    assert!(
        after_one.run_at >= now + Span::seconds(10),
        "first backoff is the base"
    );
    assert_eq!(after_one.last_error.as_deref(), Some("smtp timeout"));
    let limited = ok(store.get_job(ws, limited.id).await, "get_job");
    assert_eq!(limited.run_at, now + Span::seconds(90), "retry_after wins");

    let idle = ok(worker.drain().await, "drain before the backoff passed");
    assert_eq!(idle.claimed, 0, "a backed-off job is not due yet");

    let now = clock.advance(Span::seconds(10));
    ok(worker.drain().await, "second attempt");
    let after_two = ok(store.get_job(ws, retried.id).await, "get_job");
    assert_eq!(
        (after_two.status, after_two.attempts),
        (JobStatus::Queued, 2)
    );
    assert!(
        after_two.run_at >= now + Span::seconds(20),
        "the backoff doubles"
    );

    clock.advance(Span::seconds(20));
    let last = ok(worker.drain().await, "third attempt");
    assert_eq!(last.dead, 1, "{last:?}");
    let dead = ok(store.get_job(ws, retried.id).await, "get_job");
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 3));
    assert_eq!(dead.last_error.as_deref(), Some("smtp timeout"));
}

/// A permanent failure dead-letters at the first attempt, with the reason.
pub async fn permanent_failure_dead_letters_at_once(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let handler = Recorder::new(Behaviour::Fail(JobError::permanent(
        "payload has no contact",
    )));
    let (worker, _clock) = worker(
        &store,
        HandlerRegistry::new().with(KIND, handler.clone()),
        ws,
    );
    let queued = enqueue(&*store, &job(ws, KIND, 5)).await;
    let stats = ok(worker.drain().await, "drain");
    assert_eq!((stats.claimed, stats.dead), (1, 1), "{stats:?}");
    let dead = ok(store.get_job(ws, queued.id).await, "get_job");
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 1));
    assert_eq!(dead.last_error.as_deref(), Some("payload has no contact"));
    assert_eq!(handler.runs().get(&queued.id), Some(&1));
}

/// A worker claims only the kinds it registered; one with no handlers claims nothing.
pub async fn unregistered_kinds_are_never_claimed(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let known = enqueue(&*store, &job(ws, KIND, 3)).await;
    let unknown = enqueue(&*store, &job(ws, "engine.unknown", 3)).await;
    let (empty, _clock) = worker(&store, HandlerRegistry::new(), ws);
    assert_eq!(
        ok(empty.drain().await, "drain").claimed,
        0,
        "no handlers, no claims"
    );

    let recorder = Recorder::new(Behaviour::Succeed);
    let (worker, _clock) = worker(
        &store,
        HandlerRegistry::new().with(KIND, recorder.clone()),
        ws,
    );
    let stats = ok(worker.drain().await, "drain");
    assert_eq!((stats.claimed, stats.succeeded), (1, 1), "{stats:?}");
    assert_eq!(recorder.runs().len(), 1);
    let known = ok(store.get_job(ws, known.id).await, "get_job");
    assert_eq!(known.status, JobStatus::Succeeded);
    let unknown = ok(store.get_job(ws, unknown.id).await, "get_job");
    assert_eq!((unknown.status, unknown.attempts), (JobStatus::Queued, 0));
}

/// A job claimed by a worker that died stays running until its lease expires (plus the
/// clock-skew allowance); the worker's reaper loop then returns it and a claim loop
/// runs it.
pub async fn reaper_returns_expired_leases_and_the_job_runs_again(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let queued = enqueue(&*store, &job(ws, KIND, 3)).await;
    let crashed = Claim::new(Scope::Workspace(ws), "crashed", base(), Span::minutes(5), 1);
    assert_eq!(ok(store.claim_jobs(&crashed).await, "claim_jobs").len(), 1);

    let recorder = Recorder::new(Behaviour::Succeed);
    let (worker, clock) = worker(
        &store,
        HandlerRegistry::new().with(KIND, recorder.clone()),
        ws,
    );
    assert_eq!(ok(worker.reap_once().await, "reap"), 0, "lease not expired");
    assert_eq!(
        ok(worker.drain().await, "drain").claimed,
        0,
        "a leased job is not claimable"
    );

    clock.advance(Span::minutes(5) + MAX_CLOCK_SKEW + Span::seconds(1));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(shutdown).await }
    });
    eventually("the reaped job ran", || {
        let ran = !recorder.runs().is_empty();
        async move { ran }
    })
    .await;
    stop.send(true).expect("worker listens");
    running.await.expect("worker task");
    let done = ok(store.get_job(ws, queued.id).await, "get_job");
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
}

/// On shutdown the job whose handler started finishes and is completed; the rest of the
/// claimed batch is released unstarted with the attempt given back.
pub async fn graceful_shutdown_finishes_in_flight_and_releases_the_rest(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    for _ in 0..5 {
        enqueue(&*store, &job(ws, KIND, 3)).await;
    }
    let (started, proceed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let blocking = Recorder::new(Behaviour::Block {
        started: started.clone(),
        proceed: proceed.clone(),
    });
    let (manual, clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let config = test_config(ws).with_concurrency(1).with_batch_size(5);
    let worker = Worker::new(
        jobs,
        HandlerRegistry::new().with(KIND, blocking.clone()),
        clock,
        config,
    );
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(shutdown).await }
    });
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("a handler started");
    stop.send(true).expect("worker listens");
    proceed.notify_one();
    let stats = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the worker stops")
        .expect("worker task");
    // A claim already on its way when shutdown is asked (the other claim loop, woken
    // by the release's notification) may take a just-released job; it is released
    // again unstarted, so every claim but the one that ran ends released.
    assert!(stats.claimed >= 5, "{stats:?}");
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    assert_eq!(stats.released, stats.claimed - 1, "{stats:?}");
    assert_eq!(blocking.runs().len(), 1, "no job started after shutdown");
    let succeeded = jobs_with(&*store, ws, Some(JobStatus::Succeeded)).await;
    assert_eq!(succeeded.len(), 1);
    let queued = jobs_with(&*store, ws, Some(JobStatus::Queued)).await;
    assert_eq!(queued.len(), 4, "released jobs are queued again");
    for job in queued {
        assert_eq!(job.attempts, 0, "the release gave the attempt back");
        assert!(job.lease.is_none(), "the release cleared the lease");
        assert!(job.run_at <= manual.now(), "released jobs are due at once");
    }
}

/// Counts how many of its runs overlap: each run holds for a moment.
#[derive(Debug, Default)]
struct Overlap {
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl crm_core::jobs::JobHandler for Overlap {
    async fn handle(&self, _job: &Job, _ctx: &crm_core::jobs::JobContext) -> Result<(), JobError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.running.fetch_sub(1, SeqCst);
        Ok(())
    }
}

/// The jobs of one claimed batch run at once, `concurrency` at a time and never more,
/// and their completions are stored (in batches) before `run_once` returns.
pub async fn a_claimed_batch_runs_concurrently_up_to_the_concurrency(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    for _ in 0..9 {
        enqueue(&*store, &job(ws, KIND, 3)).await;
    }
    let overlap = Arc::new(Overlap::default());
    let (_manual, clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let config = test_config(ws).with_concurrency(3).with_batch_size(9);
    let worker = Worker::new(
        jobs,
        HandlerRegistry::new().with(KIND, overlap.clone()),
        clock,
        config,
    );
    let stats = ok(worker.run_once().await, "run_once");
    assert_eq!((stats.claimed, stats.succeeded), (9, 9), "{stats:?}");
    assert_eq!(
        overlap.most.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three jobs of the batch ran at once, never more"
    );
    let succeeded = jobs_with(&*store, ws, Some(JobStatus::Succeeded)).await;
    assert_eq!(succeeded.len(), 9, "every completion is stored");
}
