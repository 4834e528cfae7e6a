//! The job queue against apalis-postgres, the most used Rust job queue on PostgreSQL.
//!
//! Both run in this process on the same database, each in its own tables (ours in a
//! fresh `crm_test_*` schema, apalis in its `apalis` schema under a queue name of its
//! own), with no-op handlers and 8 jobs in flight on each side, batches of 10 (both
//! defaults). Every size runs both sides, the first side alternating by round.
//!
//! - Throughput at 2,000, 5,000 and 20,000 queued jobs: from starting the worker until
//!   every job ran and the worker stopped (its completions stored). Every job must run
//!   exactly once on both sides (a per-job counter, checked after each run) and be
//!   stored as done. Prints `ratio jobs_<size> = X.XX (target >= 2.00)`. Apalis's
//!   tables are vacuumed after each run (ours are fresh per run).
//! - Enqueue to start: single jobs enqueued one after another into an idle worker;
//!   both with LISTEN/NOTIFY (ours through the store's wake-ups, with the default 1 s
//!   poll as the safety net). Prints p50 and p99 against the targets (at most 5 ms and
//!   50 ms) and counts stalls over the poll interval.
//! - Approve to provider call: messages held for a person are approved one at a time
//!   through the `ApprovalInbox` of an `Engine` on PostgreSQL (default configuration,
//!   woken by the store's wake-ups); a recording adapter stamps each call. Prints p50
//!   against the target (under 20 ms). See `benches::approval_latency`.
//! - Bulk enqueue (`JobStore::enqueue_jobs` against `push_bulk`, 1,000 a call) and
//!   single enqueue with 8 producers.
//!
//! `cargo bench -p benches --bench jobs` (PostgreSQL from `DATABASE_URL`). Quick mode
//! (`BENCH_QUICK=1`, or `cargo test --benches`): 200 jobs, one round, few samples.
//! `BENCH_JOBS_ROUNDS` sets the rounds per size (default 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::{
    BoxDynError, Data, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerContext,
};
use apalis_postgres::{Config, PostgresStorage};
use async_trait::async_trait;
use benches::{rate, timed};
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{HandlerRegistry, JobContext, JobError, JobHandler, Worker, WorkerConfig};
use crm_core::model::Job;
use crm_core::store::{JobStore, WakeSource};
use crm_core::{Clock, SystemClock};
use crm_store_postgres::PostgresStore;
use futures::future::join_all;
use serde_json::json;
use tokio::sync::{Notify, watch};

const IN_FLIGHT: usize = 8;
const BATCH: u32 = 10;
const KIND: &str = "bench.noop";
const PRODUCERS: usize = 8;

/// Whether to run the short version (CI).
fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench")
}

/// Microseconds since the first call: the one clock both sides stamp jobs with.
fn micros() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // A bench measures elapsed real time.
    #[allow(clippy::disallowed_methods)]
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// How many times each job ran, by its number, and when the last one did.
#[derive(Debug)]
struct Seen {
    runs: Vec<AtomicU32>,
    total: AtomicU64,
    /// Enqueue-to-start delays (µs) of jobs that carry their enqueue instant.
    delays: std::sync::Mutex<Vec<u64>>,
    all: Notify,
}

impl Seen {
    fn new(jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            runs: (0..jobs).map(|_| AtomicU32::new(0)).collect(),
            total: AtomicU64::new(0),
            delays: std::sync::Mutex::new(Vec::new()),
            all: Notify::new(),
        })
    }

    /// Records a run of job `n` (enqueued at `sent`, µs, when known); true for the
    /// run that completes the set.
    fn ran(&self, n: u64, sent: Option<u64>) -> bool {
        if let Some(sent) = sent {
            self.delays
                .lock()
                .unwrap()
                .push(micros().saturating_sub(sent));
        }
        self.runs[usize::try_from(n).unwrap()].fetch_add(1, Ordering::SeqCst);
        let total = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        if total == self.runs.len() as u64 {
            self.all.notify_one();
            true
        } else {
            false
        }
    }

    fn assert_exactly_once(&self, side: &str) {
        let wrong: Vec<(usize, u32)> = self
            .runs
            .iter()
            .enumerate()
            .map(|(n, r)| (n, r.load(Ordering::SeqCst)))
            .filter(|(_, r)| *r != 1)
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{side}: jobs not run exactly once: {wrong:?}"
        );
    }
}

/// The no-op handler on our side.
#[derive(Debug)]
struct Noop(Arc<Seen>);

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let n = job.payload["n"].as_u64().unwrap();
        self.0.ran(n, job.payload["sent"].as_u64());
        Ok(())
    }
}

/// Apalis's job, as ours: its number and, for latency runs, its enqueue instant.
type Item = serde_json::Value;

fn item(n: u64, sent: Option<u64>) -> Item {
    json!({ "n": n, "sent": sent })
}

async fn apalis_noop(
    item: Item,
    seen: Data<Arc<Seen>>,
    wrk: WorkerContext,
) -> Result<(), BoxDynError> {
    if seen.ran(item["n"].as_u64().unwrap(), item["sent"].as_u64()) {
        wrk.stop()?;
    }
    Ok(())
}

fn our_job(ws: WorkspaceId, n: u64, sent: Option<u64>) -> Job {
    Job::new(ws, KIND, json!({ "n": n, "sent": sent }), SystemClock.now()).unwrap()
}

fn our_worker(store: &PostgresStore, seen: &Arc<Seen>, idle_poll: Duration) -> Worker {
    let jobs: Arc<dyn JobStore> = Arc::new(store.clone());
    Worker::new(
        jobs,
        HandlerRegistry::new().with(KIND, Arc::new(Noop(seen.clone()))),
        Arc::new(SystemClock),
        WorkerConfig::default()
            .with_name("bench")
            .with_concurrency(IN_FLIGHT)
            .with_batch_size(BATCH)
            .with_idle_poll(idle_poll),
    )
    .with_wakeups(store.wakeups())
}

/// A fresh queue of ours and a fresh apalis queue on the same database.
struct Sides {
    ours: PostgresStore,
    pool: sqlx::PgPool,
    queue: String,
}

impl Sides {
    async fn new() -> Self {
        let ours = crm_store_postgres::testing::fresh_store().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(crm_store_postgres::testing::TEST_MAX_CONNECTIONS)
            .connect(&crm_store_postgres::testing::database_url())
            .await
            .unwrap();
        PostgresStorage::setup(&pool).await.unwrap();
        let queue = format!("bench-jobs-{}", uuid::Uuid::now_v7().simple());
        Self { ours, pool, queue }
    }

    fn apalis(&self) -> PostgresStorage<Item> {
        PostgresStorage::new(&self.pool).with_config(
            Config::default()
                .queue(self.queue.as_str())
                .batch_size(BATCH as usize),
        )
    }

    async fn apalis_done(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
        )
        .bind(&self.queue)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Drops this run's apalis rows and vacuums its tables, so later runs meet them as
    /// this one did (this server may run without autovacuum; our side gets a fresh
    /// schema per run).
    async fn clean(&self) {
        sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
            .bind(&self.queue)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM apalis.workers WHERE worker_type = $1")
            .bind(&self.queue)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::raw_sql("VACUUM (ANALYZE) apalis.jobs, apalis.workers")
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

async fn ours_enqueue_bulk(store: &PostgresStore, ws: WorkspaceId, count: usize) {
    let jobs: Vec<Job> = (0..count as u64).map(|n| our_job(ws, n, None)).collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_jobs(chunk).await.unwrap();
    }
}

async fn apalis_enqueue_bulk(sides: &Sides, count: usize) {
    let mut backend = sides.apalis();
    let items: Vec<Item> = (0..count as u64).map(|n| item(n, None)).collect();
    for chunk in items.chunks(1000) {
        backend.push_bulk(chunk.to_vec()).await.unwrap();
    }
}

/// Runs our worker over `count` queued jobs; jobs/s.
async fn ours_throughput(count: usize) -> f64 {
    let sides = Sides::new().await;
    let ws = WorkspaceId::new();
    ours_enqueue_bulk(&sides.ours, ws, count).await;
    let seen = Seen::new(count);
    let worker = our_worker(&sides.ours, &seen, Duration::from_millis(50));
    let (stop, shutdown) = watch::channel(false);
    let (stats, elapsed) = timed(async {
        let running = tokio::spawn(async move { worker.run(shutdown).await });
        seen.all.notified().await;
        stop.send(true).unwrap();
        running.await.unwrap()
    })
    .await;
    seen.assert_exactly_once("ours");
    assert_eq!(
        stats.succeeded, count as u64,
        "ours: every completion stored: {stats:?}"
    );
    rate(count as u64, elapsed)
}

/// Runs an apalis worker over `count` queued jobs; jobs/s.
async fn apalis_throughput(count: usize) -> f64 {
    let sides = Sides::new().await;
    apalis_enqueue_bulk(&sides, count).await;
    let seen = Seen::new(count);
    let worker = WorkerBuilder::new(format!("{}-w", sides.queue))
        .backend(sides.apalis())
        .data(seen.clone())
        .concurrency(IN_FLIGHT)
        .build(apalis_noop);
    let (result, elapsed) = timed(worker.run()).await;
    result.unwrap();
    seen.assert_exactly_once("apalis");
    let done = sides.apalis_done().await;
    sides.clean().await;
    assert_eq!(done, count as i64, "apalis: every job stored as done");
    rate(count as u64, elapsed)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn throughput(size: usize, rounds: usize) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            ours.push(ours_throughput(size).await);
            theirs.push(apalis_throughput(size).await);
        } else {
            theirs.push(apalis_throughput(size).await);
            ours.push(ours_throughput(size).await);
        }
    }
    let fmt = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "jobs/{size}: ours {} jobs/s, apalis-postgres {} jobs/s (rounds, alternating first)",
        fmt(&ours),
        fmt(&theirs)
    );
    benches::report_ratio(
        &format!("jobs_{size}"),
        median(ours) / median(theirs),
        benches::Bound::AtLeast,
        2.0,
    );
}

/// p50, p99 and max of delays in µs, as milliseconds.
fn percentiles(mut delays: Vec<u64>) -> (f64, f64, f64) {
    delays.sort_unstable();
    let at = |q: f64| {
        let i = ((delays.len() as f64 - 1.0) * q).round() as usize;
        delays[i] as f64 / 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}

/// Enqueues `samples` jobs one at a time, `gap` apart, into our idle worker.
async fn ours_latency(samples: usize, idle_poll: Duration, gap: Duration) -> Vec<u64> {
    let sides = Sides::new().await;
    let ws = WorkspaceId::new();
    let seen = Seen::new(samples);
    let worker = our_worker(&sides.ours, &seen, idle_poll);
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(async move { worker.run(shutdown).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..samples as u64 {
        sides
            .ours
            .enqueue_job(&our_job(ws, n, Some(micros())))
            .await
            .unwrap();
        tokio::time::sleep(gap).await;
    }
    seen.all.notified().await;
    stop.send(true).unwrap();
    running.await.unwrap();
    seen.assert_exactly_once("ours latency");
    std::mem::take(&mut *seen.delays.lock().unwrap())
}

/// The same into an idle apalis worker woken by LISTEN/NOTIFY.
async fn apalis_latency(samples: usize, gap: Duration) -> Vec<u64> {
    let sides = Sides::new().await;
    let seen = Seen::new(samples);
    let worker = WorkerBuilder::new(format!("{}-w", sides.queue))
        .backend(sides.apalis().with_pubsub())
        .data(seen.clone())
        .concurrency(IN_FLIGHT)
        .build(apalis_noop);
    let running = tokio::spawn(async move { worker.run().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sink = sides.apalis();
    for n in 0..samples as u64 {
        sink.push(item(n, Some(micros()))).await.unwrap();
        tokio::time::sleep(gap).await;
    }
    running.await.unwrap().unwrap();
    seen.assert_exactly_once("apalis latency");
    sides.clean().await;
    std::mem::take(&mut *seen.delays.lock().unwrap())
}

async fn latency(samples: usize) {
    let gap = Duration::from_millis(20);
    let print = |side: &str, delays: Vec<u64>| {
        let stalls = delays.iter().filter(|d| **d > 1_000_000).count();
        let (p50, p99, max) = percentiles(delays);
        println!(
            "enqueue-to-start {side}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms, {stalls} over 1 s"
        );
    };
    print(
        "apalis-postgres (LISTEN/NOTIFY)",
        apalis_latency(samples, gap).await,
    );
    let ours = ours_latency(samples, Duration::from_secs(1), gap).await;
    let (p50, p99, _) = percentiles(ours.clone());
    print("ours (LISTEN/NOTIFY, 1 s poll)", ours);
    let quick = benches::quick();
    let mark = |ok: bool| if ok || quick { "" } else { " MISSED" };
    println!(
        "target enqueue_to_start_p50_ms = {p50:.1} (target <= 5.0){}",
        mark(p50 <= 5.0)
    );
    println!(
        "target enqueue_to_start_p99_ms = {p99:.1} (target <= 50.0){}",
        mark(p99 <= 50.0)
    );
}

/// Approve to provider call through the Engine on PostgreSQL (see
/// [`benches::approval_latency`]).
async fn approvals(samples: usize) {
    let store: Arc<crm_core::DynStore> = Arc::new(crm_store_postgres::testing::fresh_store().await);
    let delays: Vec<u64> = benches::approval_latency::approve_to_call(store, samples)
        .await
        .into_iter()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .collect();
    let (p50, p99, max) = percentiles(delays);
    println!(
        "approve-to-provider-call (Engine, PostgreSQL): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    let mark = if p50 < 20.0 || benches::quick() {
        ""
    } else {
        " MISSED"
    };
    println!("target approve_to_call_p50_ms = {p50:.1} (target < 20.0){mark}");
}

async fn enqueue(count: usize) {
    let sides = Sides::new().await;
    let ws = WorkspaceId::new();
    let (_, ours) = timed(ours_enqueue_bulk(&sides.ours, ws, count)).await;
    let (_, theirs) = timed(apalis_enqueue_bulk(&sides, count)).await;
    let (ours, theirs) = (rate(count as u64, ours), rate(count as u64, theirs));
    println!("bulk enqueue: ours {ours:.0} jobs/s, apalis-postgres {theirs:.0} jobs/s");
    println!("ratio bulk_enqueue = {:.2}", ours / theirs);

    let per = count / PRODUCERS;
    let (_, ours) = timed(join_all((0..PRODUCERS).map(|p| {
        let store = sides.ours.clone();
        async move {
            for i in 0..per {
                let n = (p * per + i) as u64;
                store.enqueue_job(&our_job(ws, n, None)).await.unwrap();
            }
        }
    })))
    .await;
    let (_, theirs) = timed(join_all((0..PRODUCERS).map(|p| {
        let mut sink = sides.apalis();
        async move {
            for i in 0..per {
                let n = (p * per + i) as u64;
                sink.push(item(n, None)).await.unwrap();
            }
        }
    })))
    .await;
    let total = (per * PRODUCERS) as u64;
    let (ours, theirs) = (rate(total, ours), rate(total, theirs));
    println!(
        "single enqueue, {PRODUCERS} producers: ours {ours:.0} jobs/s, apalis-postgres {theirs:.0} jobs/s"
    );
    println!("ratio single_enqueue = {:.2}", ours / theirs);
    sides.clean().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = quick();
    let sizes: Vec<usize> = if quick {
        vec![200]
    } else {
        vec![2_000, 5_000, 20_000]
    };
    let rounds = if quick {
        1
    } else {
        std::env::var("BENCH_JOBS_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
    };
    println!(
        "jobs: ours vs apalis-postgres 1.0, {IN_FLIGHT} in flight, batches of {BATCH}, no-op handlers"
    );
    for size in sizes {
        throughput(size, rounds).await;
    }
    latency(if quick { 10 } else { 100 }).await;
    approvals(if quick { 5 } else { 50 }).await;
    enqueue(if quick { 200 } else { 20_000 }).await;
}
