//! A sequence runner tick on PostgreSQL: due enrollments to outbox messages.
//!
//! The scenario, built identically in two fresh schemas of the same database: 10
//! workspaces, each with a one-step email sequence (`Hi {{first_name}}, ...`) and its
//! share of the contacts, every contact enrolled, its enrollment `Active` at step 0
//! and due. The engine: `Runner::tick` (4 workspaces at once, batches of up to 1,000)
//! until nothing is queued. The baseline, hand-written, per workspace (4 at once): one
//! transaction that claims the due enrollments with `FOR UPDATE SKIP LOCKED`, joined
//! with their contacts and their `message_sent` activities of the day (the touch
//! limit), renders the step in Rust, and in one statement moves every enrollment to
//! `StepPending` (naming its message, due again after the recheck delay) and inserts
//! the same outbox rows (same idempotency keys, rendered text and metadata). Target:
//! the engine at least 0.5x the baseline's rate. Both runs check that every enrollment
//! got exactly one message.
//!
//! `cargo bench -p benches --bench runner` (PostgreSQL from `DATABASE_URL`; size:
//! `BENCH_ENROLLMENTS`, 2,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration as StdDuration;

use benches::outbox_scenario::{WORKSPACES, now};
use benches::{Bound, check, rate, report_ratio, size, timed};
use chrono::{DateTime, Duration, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Channel, Contact, Enrollment, EnrollmentState, NewContact, Sequence, SequenceStep, StepDelay,
    Template,
};
use crm_core::outreach::runner::{Runner, RunnerConfig};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::{DynStore, ManualClock};
use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

const PARALLELISM: usize = 4;
const BATCH: u32 = 1000;
const BODY: &str = "Hi {{first_name}}, a quick question about your outreach.";
const SUBJECT: &str = "Quick question";

/// Workspaces with their sequence, contacts and due enrollments.
async fn build(store: &Arc<DynStore>, enrollments: usize) -> Vec<WorkspaceId> {
    let mut workspaces = Vec::new();
    for w in 0..WORKSPACES {
        let ws = WorkspaceId::new();
        workspaces.push(ws);
        let mut step = SequenceStep::new(
            Channel::Email,
            Template {
                subject: Some(SUBJECT.to_owned()),
                body: BODY.to_owned(),
            },
            StepDelay::Hours(0),
        );
        step.requires_approval = false;
        let sequence = Sequence::create(ws, format!("Welcome {w}"), vec![step], now()).unwrap();
        let sequence = store.insert_sequence(&sequence).await.unwrap();
        let share = enrollments / WORKSPACES + usize::from(w < enrollments % WORKSPACES);
        futures::stream::iter(0..share)
            .for_each_concurrent(16, |i| {
                let (store, sequence) = (store.clone(), sequence.clone());
                async move {
                    let contact = Contact::create(
                        ws,
                        NewContact {
                            first_name: format!("Lead{i}"),
                            email: Some(format!("lead{i}.{w}@bench.example")),
                            ..Default::default()
                        },
                        now() - Duration::days(1),
                    )
                    .unwrap();
                    let contact = store.insert_contact(&contact).await.unwrap();
                    let mut e = Enrollment::new(
                        ws,
                        sequence.id,
                        sequence.version,
                        contact.id,
                        now() - Duration::days(1),
                    );
                    e.state = EnrollmentState::Active;
                    e.next_run_at = Some(now() - Duration::minutes(1));
                    store.insert_enrollment(&e).await.unwrap();
                }
            })
            .await;
    }
    workspaces
}

async fn fresh(enrollments: usize) -> (PgPool, Arc<DynStore>, Vec<WorkspaceId>) {
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let store: Arc<DynStore> = Arc::new(pg);
    let workspaces = build(&store, enrollments).await;
    sqlx::query("ANALYZE enrollments, contacts, activities, sequences")
        .execute(&pool)
        .await
        .unwrap();
    (pool, store, workspaces)
}

/// Every enrollment has exactly one pending message of its step, and is waiting on it.
async fn check_outcome(label: &str, pool: &PgPool, enrollments: usize) {
    let (messages, distinct, waiting, linked): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_messages WHERE status = 'pending'),
                (SELECT count(DISTINCT enrollment_id) FROM outbox_messages),
                (SELECT count(*) FROM enrollments WHERE state = 'step_pending'),
                (SELECT count(*) FROM enrollments e JOIN outbox_messages m
                   ON m.workspace_id = e.workspace_id AND m.id = e.step_message_id
                  AND m.enrollment_id = e.id AND m.body LIKE 'Hi Lead%')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let n = enrollments as i64;
    check(
        messages == n && distinct == n && waiting == n && linked == n,
        || {
            format!(
                "{label}: {messages} messages for {distinct} enrollments, {waiting} waiting, {linked} linked; expected {n}"
            )
        },
    );
}

async fn engine(enrollments: usize) -> f64 {
    let (pool, store, _) = fresh(enrollments).await;
    let clock = Arc::new(ManualClock::new(now()));
    let settings = Arc::new(StaticSettings::new(WorkspaceSettings::default()));
    let config = RunnerConfig::default()
        .with_holder("bench-runner")
        .with_parallelism(PARALLELISM)
        .with_batch_size(BATCH);
    let runner = Runner::new(store, clock, settings, config).unwrap();
    let (queued, elapsed) = timed(async {
        let mut queued = 0;
        loop {
            let report = runner.tick().await.unwrap();
            check(report.failed.is_empty(), || {
                format!("runner: {} workspace passes failed", report.failed.len())
            });
            if report.enqueued() == 0 {
                return queued;
            }
            queued += report.enqueued();
        }
    })
    .await;
    check(queued == enrollments, || {
        format!("runner: the engine queued {queued} messages for {enrollments} enrollments")
    });
    check_outcome("runner engine", &pool, enrollments).await;
    print_rate("runner/postgres engine tick", queued, elapsed)
}

const CLAIM_DUE: &str = "
    SELECT e.id, e.contact_id, e.version, e.current_step, e.sequence_id, e.sequence_version,
        c.first_name, c.email,
        (SELECT count(*) FROM activities a
         WHERE a.workspace_id = e.workspace_id AND a.contact_id = e.contact_id
           AND a.kind = 'message_sent' AND a.occurred_at >= $3) AS touches
    FROM enrollments e
    JOIN contacts c ON c.workspace_id = e.workspace_id AND c.id = e.contact_id
    WHERE e.workspace_id = $1 AND e.state IN ('active', 'step_sent')
      AND e.next_run_at IS NOT NULL AND e.next_run_at <= $2
    ORDER BY e.next_run_at, e.id LIMIT $4
    FOR UPDATE OF e SKIP LOCKED";

const QUEUE: &str = "
    WITH u AS (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
                   $6::text[], $7::text[], $8::jsonb[], $9::int4[])
               AS u(id, message_id, contact_id, recipient, body, key, metadata, step)),
    advanced AS (
        UPDATE enrollments e
        SET state = 'step_pending', next_run_at = $10, step_message_id = u.message_id,
            updated_at = $11, version = e.version + 1
        FROM u WHERE e.workspace_id = $1 AND e.id = u.id
        RETURNING e.id),
    queued AS (
        INSERT INTO outbox_messages (workspace_id, id, channel, recipient, contact_id,
            enrollment_id, step_index, subject, body, idempotency_key, status, not_before,
            attempts, lease_owner, lease_token, lease_expires_at, provider_message_id,
            last_error, metadata, created_at, updated_at, sent_at, version, recipient_key)
        SELECT $1, u.message_id, 'email', u.recipient, u.contact_id, u.id, u.step, $12,
            u.body, u.key, 'pending', $11, 0, NULL, 0, NULL, NULL, NULL, u.metadata, $11,
            $11, NULL, 1, lower(btrim(u.recipient))
        FROM u
        ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
        RETURNING 1)
    SELECT (SELECT count(*) FROM advanced), (SELECT count(*) FROM queued)";

type DueRow = (Uuid, Uuid, i64, i32, Uuid, i64, String, Option<String>, i64);

/// One workspace's due enrollments to outbox messages, by hand; answers how many.
async fn hand_workspace(pool: &PgPool, ws: Uuid, at: DateTime<Utc>, limit: u32) -> usize {
    let mut tx = pool.begin().await.unwrap();
    let day_start = at.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let due: Vec<DueRow> = sqlx::query_as(CLAIM_DUE)
        .bind(ws)
        .bind(at)
        .bind(day_start)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let touch_limit = i64::from(WorkspaceSettings::default().daily_touch_limit);
    let mut cols = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (id, contact, version, step, sequence, sequence_version, first, email, touches) in &due {
        // The scenario's contacts have not been touched today; a contact at its limit
        // would be postponed, which this baseline does not need.
        check(*touches < touch_limit, || {
            "runner baseline: a contact is at its touch limit".to_owned()
        });
        cols.0.push(*id);
        cols.1.push(Uuid::now_v7());
        cols.2.push(*contact);
        cols.3.push(email.clone().unwrap_or_default());
        cols.4.push(BODY.replace("{{first_name}}", first));
        cols.5
            .push(format!("enrollment:{id}:step:{step}:attempt:{version}"));
        cols.6.push(serde_json::json!({
            "requires_approval": false,
            "template_key": format!("{sequence}:{sequence_version}:{step}"),
            "sequence_id": sequence,
            "sequence_version": sequence_version,
            "context": {"sequence": "Welcome", "step": step + 1, "steps": 1, "channel": "email"},
        }));
        cols.7.push(*step);
    }
    if due.is_empty() {
        return 0;
    }
    let (advanced, queued): (i64, i64) = sqlx::query_as(QUEUE)
        .bind(ws)
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&cols.2)
        .bind(&cols.3)
        .bind(&cols.4)
        .bind(&cols.5)
        .bind(&cols.6)
        .bind(&cols.7)
        .bind(at + Duration::hours(1))
        .bind(at)
        .bind(SUBJECT)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    check(advanced == queued && queued as usize == due.len(), || {
        format!(
            "runner baseline: {advanced} advanced, {queued} queued of {}",
            due.len()
        )
    });
    due.len()
}

async fn baseline(enrollments: usize) -> f64 {
    let (pool, _store, workspaces) = fresh(enrollments).await;
    let (queued, elapsed) = timed(async {
        let mut total = 0;
        loop {
            let done: usize = futures::stream::iter(workspaces.iter())
                .map(|ws| hand_workspace(&pool, ws.as_uuid(), now(), BATCH))
                .buffer_unordered(PARALLELISM)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .sum();
            if done == 0 {
                return total;
            }
            total += done;
        }
    })
    .await;
    check(queued == enrollments, || {
        format!("runner: the baseline queued {queued} messages for {enrollments} enrollments")
    });
    check_outcome("runner baseline", &pool, enrollments).await;
    print_rate(
        "runner/postgres hand-written batched claim",
        queued,
        elapsed,
    )
}

fn print_rate(label: &str, n: usize, elapsed: StdDuration) -> f64 {
    let per_sec = rate(n as u64, elapsed);
    println!(
        "{label:<44} {n} enrollments in {:.3} s = {per_sec:>8.0}/s",
        elapsed.as_secs_f64()
    );
    per_sec
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let enrollments = size("BENCH_ENROLLMENTS", 2_000, 100);
    let engine = engine(enrollments).await;
    let hand = baseline(enrollments).await;
    report_ratio(
        "runner.tick_vs_batched_claim",
        engine / hand,
        Bound::AtLeast,
        0.5,
    );
}
