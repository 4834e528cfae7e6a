//! Runners racing: two runners on one store, and the parallelism limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Duration;

use crate::store::fixtures::base;
use crm_core::DynStore;
use crm_core::clock::ManualClock;
use crm_core::outreach::runner::{Runner, RunnerConfig};
use crm_core::outreach::settings::WorkspaceSettings;

use super::world::{SpySettings, World, after, email};

const WORKSPACES: usize = 12;
const CONTACTS: usize = 3;

/// Two runners ticking at once over many workspaces never work on one workspace at the
/// same time, and every step of every enrollment is queued exactly once.
pub async fn two_runners_never_share_a_workspace(store: Arc<DynStore>) {
    let mut worlds = Vec::new();
    for _ in 0..WORKSPACES {
        let w = World::new(&store, WorkspaceSettings::default());
        let seq = w
            .sequence(vec![
                email("Hi", "One {{first_name}}"),
                after(email("Re", "Two"), crm_core::model::StepDelay::Hours(1)),
            ])
            .await;
        for _ in 0..CONTACTS {
            let c = w.contact().await;
            w.enroll(&c, &seq, base()).await;
        }
        worlds.push(w);
    }
    let mut now = base();
    let clock = ManualClock::new(now);
    for round in 0..4 {
        clock.set(now);
        let spy = Arc::new(
            SpySettings::new(
                WorkspaceSettings::default(),
                std::time::Duration::from_millis(5),
            )
            .checking_leases(&store, now),
        );
        let runner = |holder: &str| {
            let config = RunnerConfig::default()
                .with_holder(holder)
                .with_parallelism(4);
            Runner::new(store.clone(), Arc::new(clock.clone()), spy.clone(), config)
                .expect("runner")
        };
        let (a, b) = (runner("runner-a"), runner("runner-b"));
        let ta = tokio::spawn(async move { a.tick().await });
        let tb = tokio::spawn(async move { b.tick().await });
        let (ra, rb) = (
            ta.await.expect("join").expect("tick a"),
            tb.await.expect("join").expect("tick b"),
        );
        assert_eq!(
            spy.overlaps.load(Ordering::SeqCst),
            0,
            "round {round}: a workspace was worked on twice at once"
        );
        assert_eq!(
            spy.unleased.load(Ordering::SeqCst),
            0,
            "round {round}: a pass ran without the lease"
        );
        assert!(
            ra.failed.is_empty() && rb.failed.is_empty(),
            "{ra:?} {rb:?}"
        );
        for w in &worlds {
            w.dispatch_all(now).await;
        }
        now += Duration::hours(1) + Duration::minutes(1);
    }
    for w in &worlds {
        let messages = w.outbox().await;
        assert_eq!(messages.len(), CONTACTS * 2, "every step queued once");
        let steps: HashSet<_> = messages
            .iter()
            .map(|m| (m.enrollment_id, m.step_index))
            .collect();
        assert_eq!(steps.len(), messages.len(), "no step queued twice");
    }
}

/// A runner works on at most `parallelism` workspaces at once, and on all of them.
pub async fn runner_parallelism_is_respected(store: Arc<DynStore>) {
    assert_eq!(
        RunnerConfig::default().parallelism,
        4,
        "the default parallelism"
    );
    let mut worlds = Vec::new();
    for _ in 0..8 {
        let w = World::new(&store, WorkspaceSettings::default());
        let seq = w.sequence(vec![email("Hi", "One")]).await;
        let c = w.contact().await;
        w.enroll(&c, &seq, base()).await;
        worlds.push(w);
    }
    let spy = Arc::new(SpySettings::new(
        WorkspaceSettings::default(),
        // Long enough that the three workspaces started together overlap on a loaded machine.
        std::time::Duration::from_millis(250),
    ));
    let config = RunnerConfig::default()
        .with_holder("runner-a")
        .with_parallelism(3);
    let clock = Arc::new(ManualClock::new(base()));
    let runner = Runner::new(store.clone(), clock, spy.clone(), config).expect("runner");
    let report = runner.tick().await.expect("tick");
    assert_eq!(report.tenants.len(), 8, "every workspace was worked on");
    assert_eq!(report.enqueued(), 8);
    let max = spy.max_concurrent.load(Ordering::SeqCst);
    assert_eq!(
        max, 3,
        "at most 3 workspaces at once, and 3 when there is enough work"
    );
    assert!(
        RunnerConfig::default()
            .with_parallelism(0)
            .validate()
            .is_err(),
        "parallelism 0 is refused"
    );
}
