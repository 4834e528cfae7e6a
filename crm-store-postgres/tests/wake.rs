//! Wake-ups over `LISTEN/NOTIFY` (migration 0016): notifications leave with the
//! commit only, a claim notifies nobody, and a worker whose listener connection is
//! killed still starts work within its poll, then within milliseconds again once the
//! listener is back.

// These cases measure real latency against the system's time (jobs are due by it).
#![allow(clippy::disallowed_methods, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use crm_core::clock::SystemClock;
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{HandlerRegistry, JobContext, JobError, JobHandler, Worker, WorkerConfig};
use crm_core::model::Job;
use crm_core::store::{Claim, JobStore, Scope, WakeSource, WakeTopic};
use crm_store_postgres::PostgresStore;
use crm_store_postgres::testing::fresh_store;
use serde_json::json;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};

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

async fn channel(store: &PostgresStore, topic: &str) -> String {
    let digest: String = sqlx::query_scalar("SELECT md5($1)")
        .bind(store.schema())
        .fetch_one(store.pool())
        .await
        .expect("md5");
    format!("crm_wake_{digest}_{topic}")
}

async fn enqueue(store: &PostgresStore, ws: WorkspaceId, due: chrono::DateTime<Utc>) {
    let job = Job::new(ws, KIND, json!({}), due).expect("valid job");
    store.enqueue_job(&job).await.expect("enqueued");
}

/// Whether a notification arrives within `wait`.
async fn notified(listener: &mut PgListener, wait: Duration) -> Option<String> {
    match tokio::time::timeout(wait, listener.recv()).await {
        Ok(Ok(note)) => Some(note.channel().to_owned()),
        Ok(Err(e)) => panic!("listening failed: {e}"),
        Err(_) => None,
    }
}

/// A job inserted in a transaction notifies only when it commits: nothing before the
/// commit, nothing after a rollback. A claim and a completion notify nobody, and the
/// notification names this schema's channel only.
#[tokio::test]
async fn notifications_leave_with_the_commit_only() {
    let store = fresh_store().await;
    let jobs = channel(&store, "jobs").await;
    let mut listener = PgListener::connect_with(store.pool())
        .await
        .expect("listen");
    listener.listen(&jobs).await.expect("listen");
    let ws = WorkspaceId::new();
    let insert = "INSERT INTO jobs (workspace_id, id, kind, payload, status, attempts, \
                  max_attempts, run_at, lease_token, created_at, updated_at) \
                  VALUES ($1, $2, 'wake.probe', '{}', 'queued', 0, 5, now(), 0, now(), now())";

    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query(insert)
        .bind(ws.as_uuid())
        .bind(crm_core::ids::JobId::new().as_uuid())
        .execute(&mut *tx)
        .await
        .expect("insert");
    assert_eq!(
        notified(&mut listener, Duration::from_millis(300)).await,
        None,
        "nothing is delivered before the commit"
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(
        notified(&mut listener, Duration::from_millis(300)).await,
        None,
        "a rolled-back write wakes nobody"
    );

    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query(insert)
        .bind(ws.as_uuid())
        .bind(crm_core::ids::JobId::new().as_uuid())
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(
        notified(&mut listener, Duration::from_secs(5)).await,
        Some(jobs.clone()),
        "the commit delivers the notification"
    );

    let claim = Claim::new(
        Scope::All,
        "w",
        Utc::now(),
        chrono::Duration::minutes(1),
        10,
    );
    let claimed = store.claim_jobs(&claim).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let lease = claimed[0].lease.as_ref().expect("leased").token;
    store
        .complete_job(claimed[0].workspace_id, claimed[0].id, lease, Utc::now())
        .await
        .expect("complete");
    assert_eq!(
        notified(&mut listener, Duration::from_millis(300)).await,
        None,
        "claiming and completing leave nothing claimable and notify nobody"
    );

    // Another store's schema has its own channel.
    let other = fresh_store().await;
    enqueue(&other, ws, Utc::now()).await;
    assert_eq!(
        notified(&mut listener, Duration::from_millis(300)).await,
        None,
        "stores in other schemas do not wake this one"
    );
}

/// The backend pids of the store's wake-up listener.
async fn listener_pids(store: &PostgresStore, jobs_channel: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND strpos(query, $1) > 0",
    )
    .bind(jobs_channel)
    .fetch_all(store.pool())
    .await
    .expect("pg_stat_activity")
}

async fn started(rx: &mut mpsc::UnboundedReceiver<Instant>) -> Instant {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(at)) => at,
        _ => panic!("the job never started"),
    }
}

/// Enqueues `n` jobs one after another and returns each one's enqueue-to-start time.
async fn latencies(
    store: &PostgresStore,
    rx: &mut mpsc::UnboundedReceiver<Instant>,
    n: usize,
) -> Vec<Duration> {
    let ws = WorkspaceId::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let enqueued = Instant::now();
        enqueue(store, ws, Utc::now()).await;
        out.push(started(rx).await.saturating_duration_since(enqueued));
        // Let the worker finish and go idle: measure a wake, not a busy loop.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

fn worker(store: &PostgresStore, poll: Duration) -> (Worker, mpsc::UnboundedReceiver<Instant>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs: Arc<dyn JobStore> = Arc::new(store.clone());
    let config = WorkerConfig::default()
        .with_concurrency(2)
        .with_idle_poll(poll);
    let worker = Worker::new(
        jobs,
        HandlerRegistry::new().with(KIND, Arc::new(Probe(tx))),
        Arc::new(SystemClock),
        config,
    )
    .with_wakeups(store.wakeups());
    (worker, rx)
}

/// The listener's connection is killed mid-run: a job enqueued at once still starts
/// within the worker's poll (the reconnect signals every loop, the poll is the safety
/// net), and once the listener is back jobs start within milliseconds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_listener_costs_at_most_the_poll_and_then_reconnects() {
    let store = fresh_store().await;
    let poll = Duration::from_millis(500);
    let (worker, mut rx) = worker(&store, poll);
    let (stop, shutdown) = watch::channel(false);
    let run = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(shutdown).await }
    });
    let jobs = channel(&store, "jobs").await;
    let mut pids = Vec::new();
    for _ in 0..200 {
        pids = listener_pids(&store, &jobs).await;
        if !pids.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pids.len(), 1, "one listener per store");

    let before = latencies(&store, &mut rx, 10).await;
    println!("with the listener: {before:?}");
    assert!(
        percentile(&before, 50) < Duration::from_millis(100),
        "{before:?}"
    );

    for round in 0..3 {
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pids[0])
            .fetch_one(store.pool())
            .await
            .expect("terminate");
        assert!(
            killed,
            "round {round}: the listener's backend was terminated"
        );
        let ws = WorkspaceId::new();
        let enqueued = Instant::now();
        enqueue(&store, ws, Utc::now()).await;
        let waited = started(&mut rx).await.saturating_duration_since(enqueued);
        println!("round {round}: listener killed, the job started after {waited:?}");
        assert!(
            waited < poll + Duration::from_millis(250),
            "round {round}: a lost listener delays work by at most the poll: {waited:?}"
        );
        let mut back = Vec::new();
        for _ in 0..400 {
            back = listener_pids(&store, &jobs).await;
            if back.len() == 1 && back[0] != pids[0] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            back.len() == 1 && back[0] != pids[0],
            "round {round}: the listener reconnected: {back:?} (was {pids:?})"
        );
        pids = back;
        let after = latencies(&store, &mut rx, 10).await;
        println!("round {round}: after the reconnect: {after:?}");
        assert!(
            percentile(&after, 50) < Duration::from_millis(100),
            "round {round}: signals flow again after the reconnect: {after:?} (poll {poll:?})"
        );
    }
    let _ = stop.send(true);
    let stats = run.await.expect("the worker stops");
    assert_eq!(stats.succeeded, 10 + 3 * 11);
}

/// Informal measurement, printed: enqueue-to-start over 200 single enqueues with a
/// 30 s poll, so every start is a wake-up. Bounds are loose (a shared test machine);
/// the bench measures properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_to_start_is_milliseconds_with_a_long_poll() {
    let store = fresh_store().await;
    let (worker, mut rx) = worker(&store, Duration::from_secs(30));
    let (stop, shutdown) = watch::channel(false);
    let run = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(shutdown).await }
    });
    // The listener signals every topic once it has connected; wait for that wake.
    let mut sub = store.wakeups().subscribe(WakeTopic::Jobs);
    let _ = sub.wait(Duration::from_secs(5)).await;
    let sorted = latencies(&store, &mut rx, 200).await;
    let (p50, p99) = (percentile(&sorted, 50), percentile(&sorted, 99));
    let max = sorted.last().copied().unwrap_or_default();
    println!("enqueue to start over 200 jobs: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
    assert!(
        max < Duration::from_secs(5),
        "no job waited for the 30 s poll: {max:?}"
    );
    let _ = stop.send(true);
    run.await.expect("the worker stops");
}
