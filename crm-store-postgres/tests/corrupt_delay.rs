//! A step delay past its maximum written straight into the table (around
//! `Sequence::validate`, which refuses it on save): a runner tick fails only the
//! enrollments of that sequence, with the reason, and goes on for the others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::ids::{ApprovalRuleId, SequenceId};
use crm_core::model::{Channel, EnrollmentState, StepDelay};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, DispatcherConfig, StubChannel};
use crm_core::outreach::runner::RunnerError;
use crm_core::outreach::settings::WorkspaceSettings;
use crm_testkit::engine::dispatch::ApproveAll;
use crm_testkit::engine::runner::World;
use crm_testkit::engine::runner::world::{after, email, utc};

/// Writes `BusinessDays(u32::MAX)` as the delay of `step` of every version of
/// `sequence`, bypassing validation.
async fn corrupt(pool: &sqlx::PgPool, sequence: SequenceId, step: i32) {
    let path = vec![step.to_string(), "delay".to_owned()];
    let delay = serde_json::json!({ "unit": "business_days", "amount": u32::MAX });
    for sql in [
        "UPDATE sequences SET steps = jsonb_set(steps, $2, $3) WHERE id = $1",
        "UPDATE sequence_versions SET steps = jsonb_set(steps, $2, $3) WHERE sequence_id = $1",
    ] {
        let done = sqlx::query(sql)
            .bind(sequence.as_uuid())
            .bind(&path)
            .bind(&delay)
            .execute(pool)
            .await
            .expect("corrupt the stored delay");
        assert!(done.rows_affected() >= 1, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_delay_fails_only_its_enrollment() {
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let store: Arc<DynStore> = Arc::new(pg);
    let w = World::new(&store, WorkspaceSettings::default());
    let good = w
        .sequence(vec![
            email("Hi", "Hello"),
            after(email("Re", "Again"), StepDelay::Hours(2)),
        ])
        .await;
    let bad_first = w.sequence(vec![email("Hi", "Hello")]).await;
    let bad_second = w
        .sequence(vec![
            email("Hi", "Hello"),
            after(email("Re", "Again"), StepDelay::Hours(2)),
        ])
        .await;
    let (a, b, c) = (w.contact().await, w.contact().await, w.contact().await);
    let t0 = utc(2026, 3, 2, 10, 0);
    let ea = w.enroll(&a, &good, t0).await;
    let eb = w.enroll(&b, &bad_first, t0).await;
    let ec = w.enroll(&c, &bad_second, t0).await;
    corrupt(&pool, bad_first.id, 0).await;
    corrupt(&pool, bad_second.id, 1).await;

    let runner = w.runner("corrupt-delay");
    let report = w.tick(&runner, t0).await.expect("the tick goes on");
    let tenant = report.tenant(w.ws).expect("the workspace was worked on");
    assert_eq!(
        tenant.enqueued, 2,
        "the others' steps are queued: {tenant:?}"
    );
    let failed: Vec<_> = tenant.failed.iter().map(|f| f.enrollment_id).collect();
    assert_eq!(failed, vec![eb.id], "only the corrupt enrollment fails");
    assert!(
        matches!(tenant.failed[0].error, RunnerError::Delay { step: 0, .. }),
        "with its reason: {:?}",
        tenant.failed[0].error
    );
    let parked = w.enrollment(eb.id).await;
    assert_eq!(parked.state, EnrollmentState::Paused);
    assert_eq!(parked.end_reason.as_deref(), Some("delay_out_of_range"));

    // The dispatcher sends the queued steps; the corrupt next delay of `bad_second`
    // cannot be scheduled, so its enrollment waits for the runner's recheck.
    let dispatcher = Dispatcher::new(
        store.clone(),
        w.time(),
        w.provider(),
        ChannelRegistry::new().with(Arc::new(StubChannel::ok(Channel::Email))),
        DispatcherConfig::default()
            .with_worker("corrupt-delay")
            .with_env_dry_run(false),
    )
    .with_policy(Arc::new(ApproveAll {
        rule: ApprovalRuleId::new(),
    }));
    let sent = dispatcher.dispatch_batch().await.expect("dispatch");
    assert_eq!(sent.sent, 2, "{sent:?}");

    let later = w.clock.now() + chrono::Duration::hours(2);
    let report = w.tick(&runner, later).await.expect("the tick goes on");
    let tenant = report.tenant(w.ws).expect("worked on");
    let failed: Vec<_> = tenant.failed.iter().map(|f| f.enrollment_id).collect();
    assert_eq!(
        failed,
        vec![ec.id],
        "only the enrollment with the corrupt step fails"
    );
    assert!(
        matches!(tenant.failed[0].error, RunnerError::Delay { step: 1, .. }),
        "{:?}",
        tenant.failed[0].error
    );
    let parked = w.enrollment(ec.id).await;
    assert_eq!(parked.state, EnrollmentState::Paused, "{parked:?}");
    assert_eq!(parked.end_reason.as_deref(), Some("delay_out_of_range"));
    assert_eq!(parked.current_step, 1, "step 0 is recorded as sent");
    assert_eq!(
        tenant.enqueued, 1,
        "the good enrollment's second step: {tenant:?}"
    );
    assert_eq!(
        w.enrollment(ea.id).await.state,
        EnrollmentState::StepPending
    );

    // Parked enrollments are not failed again on later ticks.
    let report = w
        .tick(&runner, later + chrono::Duration::hours(3))
        .await
        .expect("tick");
    assert!(
        report.tenants.iter().all(|t| t.failed.is_empty()),
        "{report:?}"
    );
}
