//! Dispatch throughput, the full pipeline against fair hand-written baselines.
//!
//! The scenario (`benches::outbox_scenario`): 1,000 contacts over 10 workspaces, each
//! workspace with an enabled `GraduatedRules` rule (confidence at least 0.5; every
//! message is drafted at 0.9), every contact's email consent granted, 2 in 50 contacts
//! blocked (consent withdrawn or address suppressed: their messages must be cancelled,
//! never sent), and a daily quota consumed per workspace. The adapter counts hand-overs
//! per message and takes 0 or 2 ms per send; every run checks that every deliverable
//! message was handed over exactly once and none of the blocked ones.
//!
//! - Memory store: the full pipeline, against the 200,000 messages/s target.
//! - PostgreSQL, per adapter latency, each run on a fresh schema of the same database
//!   holding the same scenario: the engine (`Dispatcher`, 8 workers, batches of 100)
//!   against the hand-written baseline of `benches::outbox_sql` (the same durable
//!   work), once as a single-row `FOR UPDATE SKIP LOCKED` loop and once batched
//!   (claims of 100), 8 workers each. Targets: at least 2x the single-row loop, at
//!   least 0.7x the batched baseline.
//!
//! `cargo bench -p benches --bench dispatch` (PostgreSQL from `DATABASE_URL`). Sizes:
//! `BENCH_CONTACTS` (1,000), `BENCH_MESSAGES_PER_CONTACT_MEMORY` (100),
//! `BENCH_MESSAGES_PER_CONTACT_POSTGRES` (3). `BENCH_QUICK=1`: 100 contacts, one
//! message each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use benches::adapter::CountingAdapter;
use benches::outbox_scenario::{self, Counted, Filled, Scenario};
use benches::outbox_sql::HandWritten;
use benches::{Bound, rate, report_ratio, size, timed};
use crm_core::approval::ApprovalPolicy;
use crm_core::model::Channel;
use crm_core::outreach::approvals::GraduatedRules;
use crm_core::outreach::dispatch::{ChannelRegistry, DispatchReport, Dispatcher, DispatcherConfig};
use crm_core::{DynStore, ManualClock};
use futures::future::join_all;

const WORKERS: usize = 8;
const BATCH: u32 = 100;
const MEMORY_BATCH: u32 = 500;

/// Runs `WORKERS` dispatchers with the graduated policy until the outbox is drained.
async fn drain(store: &Arc<DynStore>, adapter: &CountingAdapter, batch: u32) -> DispatchReport {
    let clock = Arc::new(ManualClock::new(outbox_scenario::now()));
    let settings = Arc::new(outbox_scenario::settings());
    let policy: Arc<dyn ApprovalPolicy> = Arc::new(GraduatedRules::new(
        store.clone(),
        clock.clone(),
        settings.clone(),
    ));
    let workers = (0..WORKERS).map(|i| {
        let dispatcher = Dispatcher::new(
            store.clone(),
            clock.clone(),
            settings.clone(),
            ChannelRegistry::new().with(Arc::new(adapter.clone())),
            DispatcherConfig::default()
                .with_worker(format!("bench-{i}"))
                .with_batch_size(batch)
                .with_env_dry_run(false),
        )
        .with_policy(policy.clone());
        async move {
            let mut total = DispatchReport::default();
            loop {
                let report = dispatcher.dispatch_batch().await.unwrap();
                total.merge(&report);
                if report.claimed == 0 {
                    return total;
                }
            }
        }
    });
    let mut total = DispatchReport::default();
    for r in join_all(workers).await {
        total.merge(&r);
    }
    total
}

async fn memory(contacts: usize, per_contact: usize) {
    let store: Arc<DynStore> = Arc::new(crm_store_memory::MemoryStore::new());
    let scenario = outbox_scenario::build(&store, contacts).await;
    let filled = outbox_scenario::fill(&store, &scenario, per_contact).await;
    let adapter = CountingAdapter::new(Channel::Email, Duration::ZERO);
    let (report, elapsed) = timed(drain(&store, &adapter, MEMORY_BATCH)).await;
    outbox_scenario::verify("dispatch/memory", &filled, &adapter, Counted::from(&report));
    let handled = report.sent + report.cancelled;
    let per_sec = rate(handled, elapsed);
    println!(
        "dispatch/memory   {handled} messages ({} sent, {} cancelled) in {:.3} s = {per_sec:.0} msg/s",
        report.sent,
        report.cancelled,
        elapsed.as_secs_f64()
    );
    report_ratio(
        "dispatch.memory_vs_200k_per_s",
        per_sec / 200_000.0,
        Bound::AtLeast,
        1.0,
    );
}

/// A fresh schema holding the scenario and its messages.
async fn fresh(contacts: usize, per_contact: usize) -> (sqlx::PgPool, Arc<DynStore>, Filled) {
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let store: Arc<DynStore> = Arc::new(pg);
    let scenario: Scenario = outbox_scenario::build(&store, contacts).await;
    let filled = outbox_scenario::fill(&store, &scenario, per_contact).await;
    sqlx::query("ANALYZE outbox_messages, contacts, consents, suppressions, approval_rules")
        .execute(&pool)
        .await
        .unwrap();
    (pool, store, filled)
}

/// The outbox's final statuses agree with what the run counted.
async fn check_statuses(label: &str, pool: &sqlx::PgPool, filled: &Filled) {
    let (sent, cancelled, other): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'sent'),
                count(*) FILTER (WHERE status = 'cancelled'),
                count(*) FILTER (WHERE status NOT IN ('sent', 'cancelled'))
         FROM outbox_messages",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    benches::check(
        sent as usize == filled.deliver.len()
            && cancelled as usize == filled.blocked.len()
            && other == 0,
        || format!("{label}: outbox holds {sent} sent, {cancelled} cancelled, {other} other"),
    );
}

/// Messages per second of one PostgreSQL run.
async fn engine_pg(contacts: usize, per_contact: usize, latency: Duration) -> f64 {
    let (pool, store, filled) = fresh(contacts, per_contact).await;
    let adapter = CountingAdapter::new(Channel::Email, latency);
    let (report, elapsed) = timed(drain(&store, &adapter, BATCH)).await;
    let label = format!("dispatch/postgres engine {}ms", latency.as_millis());
    outbox_scenario::verify(&label, &filled, &adapter, Counted::from(&report));
    check_statuses(&label, &pool, &filled).await;
    print_rate(&label, report.sent + report.cancelled, elapsed)
}

async fn baseline_pg(contacts: usize, per_contact: usize, latency: Duration, batch: i64) -> f64 {
    let (pool, _store, filled) = fresh(contacts, per_contact).await;
    let adapter = CountingAdapter::new(Channel::Email, latency);
    let concurrency = DispatcherConfig::default().concurrency();
    let hand = HandWritten::new(
        pool.clone(),
        adapter.clone(),
        batch,
        concurrency,
        outbox_scenario::now(),
    );
    let (counts, elapsed) = timed(join_all((0..WORKERS).map(|i| {
        let hand = hand.clone();
        async move { hand.drain(&format!("raw-{i}")).await }
    })))
    .await;
    let counted = counts.iter().fold(Counted::default(), |a, c| Counted {
        sent: a.sent + c.sent,
        cancelled: a.cancelled + c.cancelled,
    });
    let kind = if batch == 1 { "single-row" } else { "batched" };
    let label = format!(
        "dispatch/postgres {kind} baseline {}ms",
        latency.as_millis()
    );
    outbox_scenario::verify(&label, &filled, &adapter, counted);
    check_statuses(&label, &pool, &filled).await;
    print_rate(&label, counted.sent + counted.cancelled, elapsed)
}

fn print_rate(label: &str, handled: u64, elapsed: Duration) -> f64 {
    let per_sec = rate(handled, elapsed);
    println!(
        "{label:<44} {handled} msgs in {:.3} s = {per_sec:>8.0} msg/s",
        elapsed.as_secs_f64()
    );
    per_sec
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let contacts = size("BENCH_CONTACTS", 1_000, 100);
    let per_memory = size("BENCH_MESSAGES_PER_CONTACT_MEMORY", 100, 1);
    let per_pg = size("BENCH_MESSAGES_PER_CONTACT_POSTGRES", 3, 1);
    memory(contacts, per_memory).await;
    for ms in [0_u64, 2] {
        let latency = Duration::from_millis(ms);
        let engine = engine_pg(contacts, per_pg, latency).await;
        let single = baseline_pg(contacts, per_pg, latency, 1).await;
        let batched = baseline_pg(contacts, per_pg, latency, i64::from(BATCH)).await;
        report_ratio(
            &format!("dispatch.pg_vs_single_row_{ms}ms"),
            engine / single,
            Bound::AtLeast,
            2.0,
        );
        report_ratio(
            &format!("dispatch.pg_vs_batched_{ms}ms"),
            engine / batched,
            Bound::AtLeast,
            0.7,
        );
    }
}
