//! Dispatch throughput.
//!
//! - Memory store: the full dispatch pipeline over many messages, against the
//!   200,000 messages/s target.
//! - PostgreSQL: the full pipeline (claim in batches, approval, suppression and consent,
//!   quota, adapter, mark sent with its activity) against a raw single-row
//!   `FOR UPDATE SKIP LOCKED` claim + complete loop on an equivalent table in the same
//!   database, with the same number of concurrent workers. Prints the ratio (target at
//!   least 0.5x).
//!
//! `cargo bench -p benches --bench dispatch` (PostgreSQL from `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Sizes: `BENCH_MESSAGES_MEMORY`,
//! `BENCH_MESSAGES_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use benches::{rate, size, timed};
use chrono::{TimeZone, Utc};
use crm_core::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PolicyError};
use crm_core::ids::{ApprovalRuleId, WorkspaceId};
use crm_core::model::{Channel, Contact, NewContact, OutboxMessage};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, DispatcherConfig, StubChannel};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::{Clock, DynStore, ManualClock, SystemClock};
use futures::future::join_all;

const WORKERS: usize = 8;

/// Auto-approves every send, as a workspace with a broad graduated rule would.
#[derive(Debug)]
struct ApproveAll(ApprovalRuleId);

#[async_trait]
impl ApprovalPolicy for ApproveAll {
    async fn decide(&self, _request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(ApprovalDecision::AutoApprove { rule: self.0 })
    }
}

/// Enqueues `count` messages for one contact of a fresh workspace.
async fn fill_outbox(store: &Arc<DynStore>, clock: &ManualClock, count: usize) -> WorkspaceId {
    let ws = WorkspaceId::new();
    let contact = store
        .insert_contact(
            &Contact::create(
                ws,
                NewContact {
                    first_name: "Bench".into(),
                    email: Some("bench@example.com".into()),
                    ..Default::default()
                },
                clock.now(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        join_all(chunk.iter().map(|i| {
            let message = OutboxMessage::new(
                ws,
                Channel::Email,
                "bench@example.com",
                "Hello",
                format!("bench-{i}"),
                clock.now(),
            )
            .unwrap()
            .with_contact(contact.id);
            let store = store.clone();
            async move { store.enqueue_outbox(&message).await.unwrap() }
        }))
        .await;
    }
    ws
}

/// Runs `WORKERS` dispatchers until the outbox is drained; returns messages sent.
async fn drain(store: &Arc<DynStore>, clock: &ManualClock, stub: &StubChannel, batch: u32) -> u64 {
    let settings =
        StaticSettings::new(WorkspaceSettings::default().with_daily_cap(Channel::Email, u32::MAX));
    let workers = (0..WORKERS).map(|i| {
        let dispatcher = Dispatcher::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(settings.clone()),
            ChannelRegistry::new().with(Arc::new(stub.clone())),
            DispatcherConfig::default()
                .with_worker(format!("bench-{i}"))
                .with_batch_size(batch)
                .with_env_dry_run(false),
        )
        .with_policy(Arc::new(ApproveAll(ApprovalRuleId::new())));
        async move {
            let mut sent = 0;
            loop {
                let report = dispatcher.dispatch_batch().await.unwrap();
                sent += report.sent;
                if report.claimed == 0 {
                    return sent;
                }
            }
        }
    });
    join_all(workers).await.into_iter().sum()
}

async fn memory(count: usize) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
    let store: Arc<DynStore> = Arc::new(crm_store_memory::MemoryStore::new());
    fill_outbox(&store, &clock, count).await;
    let stub = StubChannel::ok(Channel::Email);
    let (sent, elapsed) = timed(drain(&store, &clock, &stub, 500)).await;
    assert_eq!(sent as usize, count);
    assert_eq!(stub.handed_count() as usize, count);
    let per_sec = rate(sent, elapsed);
    println!(
        "dispatch/memory   {sent} messages in {:.3} s = {per_sec:>9.0} msg/s; target 200000 msg/s: {:.2}x",
        elapsed.as_secs_f64(),
        per_sec / 200_000.0
    );
}

const RAW_TABLE: &str = "CREATE TABLE raw_outbox (
    id bigserial PRIMARY KEY,
    status text NOT NULL,
    not_before timestamptz NOT NULL,
    body text NOT NULL,
    sent_at timestamptz
)";
const RAW_INDEX: &str =
    "CREATE INDEX raw_outbox_claim ON raw_outbox (not_before, id) WHERE status = 'pending'";
const RAW_FILL: &str = "INSERT INTO raw_outbox (status, not_before, body) SELECT 'pending', now() - interval '1 minute', 'Hello' FROM generate_series(1, $1)";
const RAW_CLAIM: &str = "UPDATE raw_outbox SET status = 'in_flight'
    WHERE id = (SELECT id FROM raw_outbox WHERE status = 'pending' AND not_before <= now()
                ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id";
const RAW_COMPLETE: &str = "UPDATE raw_outbox SET status = 'sent', sent_at = now() WHERE id = $1";

/// The baseline: `WORKERS` loops of single-row claim + complete until the table is drained.
async fn raw_claim_loop(pool: &sqlx::PgPool, count: usize) -> u64 {
    sqlx::query(RAW_TABLE).execute(pool).await.unwrap();
    sqlx::query(RAW_INDEX).execute(pool).await.unwrap();
    sqlx::query(RAW_FILL)
        .bind(i64::try_from(count).unwrap())
        .execute(pool)
        .await
        .unwrap();
    let (done, elapsed) = timed(join_all((0..WORKERS).map(|_| async {
        let mut done = 0u64;
        while let Some(id) = sqlx::query_scalar::<_, i64>(RAW_CLAIM)
            .fetch_optional(pool)
            .await
            .unwrap()
        {
            sqlx::query(RAW_COMPLETE)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
            done += 1;
        }
        done
    })))
    .await;
    let done: u64 = done.into_iter().sum();
    assert_eq!(done as usize, count);
    let per_sec = rate(done, elapsed);
    println!(
        "dispatch/postgres raw claim+complete: {done} rows in {:.3} s = {per_sec:>8.0} rows/s",
        elapsed.as_secs_f64()
    );
    elapsed.as_nanos() as u64
}

async fn postgres(count: usize) {
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let clock = ManualClock::new(SystemClock.now());
    let store: Arc<DynStore> = Arc::new(pg);
    fill_outbox(&store, &clock, count).await;
    let stub = StubChannel::ok(Channel::Email);
    let (sent, elapsed) = timed(drain(&store, &clock, &stub, 100)).await;
    assert_eq!(sent as usize, count);
    let pipeline = rate(sent, elapsed);
    println!(
        "dispatch/postgres pipeline:           {sent} msgs in {:.3} s = {pipeline:>8.0} msg/s",
        elapsed.as_secs_f64()
    );
    let baseline_nanos = raw_claim_loop(&pool, count).await;
    let baseline = rate(
        count as u64,
        std::time::Duration::from_nanos(baseline_nanos),
    );
    println!(
        "dispatch/postgres ratio pipeline/raw = {:.2}x (target >= 0.50x, {WORKERS} workers each)",
        pipeline / baseline
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mem = size("BENCH_MESSAGES_MEMORY", 100_000, 2_000);
    let pg = size("BENCH_MESSAGES_POSTGRES", 5_000, 200);
    memory(mem).await;
    postgres(pg).await;
}
