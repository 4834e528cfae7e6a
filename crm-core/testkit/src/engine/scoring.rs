//! The scoring service against a real store: scores, tier events, decay, bulk
//! rescoring after a model change, overrides, and event-driven recomputation.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use crate::store::fixtures::{account, base, contact, new_contact, ok, unique_email};
use crate::store::scoring_model;
use crm_core::DynStore;
use crm_core::clock::{Clock, ManualClock};
use crm_core::error::StoreErrorKind;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::jobs::{EventBus, EventRoutes, JobContext, JobHandler};
use crm_core::model::{Activity, ActivityKind, Actor, Event, JobStatus, NewEvent};
use crm_core::scoring::{
    CONTACT_SCORED, LEAD_QUALIFIED, RESCORE_ALL, RESCORE_CONTACT, RescoreAllHandler,
    RescoreContactHandler, Scorer, ScoringError, ScoringModel, Tier, explain, scoring_routes,
};
use crm_core::store::{Page, Scope};

/// Expands to one `#[tokio::test]` per scoring scenario, in a module named
/// `scoring_engine`. `$make` is a path to an `async fn() -> S` where
/// `S: crm_core::Store`, called once per test.
#[macro_export]
macro_rules! scoring_conformance_tests {
    ($make:path) => {
        mod scoring_engine {
            #[allow(unused_imports)]
            use super::*;

            $crate::__scoring_case!($make;
                scorer_scores_within_bounds_and_emits_tier_events
                decay_lowers_tiers_and_reports_the_previous_one
                model_change_enqueues_a_bulk_rescore
                override_needs_a_reason_and_is_audited
                old_scores_stay_explainable
                events_route_to_contact_rescoring
            );
        }
    };
}

/// One test per case; called by [`scoring_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __scoring_case {
    ($make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let store: ::std::sync::Arc<$crate::__core::DynStore> =
                    ::std::sync::Arc::new($make().await);
                $crate::engine::scoring::$case(store).await;
            }
        )*
    };
}

struct World {
    store: Arc<DynStore>,
    clock: Arc<ManualClock>,
    scorer: Scorer,
    ws: WorkspaceId,
    model: ScoringModel,
}

async fn world(store: Arc<DynStore>) -> World {
    let clock = Arc::new(ManualClock::new(base()));
    let scorer = Scorer::new(store.clone(), clock.clone());
    let ws = WorkspaceId::new();
    let model = scorer
        .save_model(&scoring_model(ws))
        .await
        .expect("save the model");
    World {
        store,
        clock,
        scorer,
        ws,
        model,
    }
}

/// A contact at a matching account with three fresh clicks and a booked meeting:
/// firmographic 100 (30), behavioral 60 (24), intent 100 (30) = 84, Hot.
async fn hot_contact(w: &World) -> ContactId {
    let acct = account(&*w.store, w.ws).await;
    let mut c = new_contact(w.ws, &unique_email());
    c.account_id = Some(acct.id);
    let c = ok(w.store.insert_contact(&c).await, "insert contact");
    let now = w.clock.now();
    for kind in [
        ActivityKind::Clicked,
        ActivityKind::Clicked,
        ActivityKind::Clicked,
        ActivityKind::MeetingBooked,
    ] {
        let a = Activity::for_contact(w.ws, c.id, kind, "Engaged", now).expect("activity");
        ok(w.store.record_activity(&a).await, "record activity");
    }
    c.id
}

async fn events(w: &World, kind: &str) -> Vec<Event> {
    ok(
        w.store.list_events(Scope::Workspace(w.ws), 0, 1000).await,
        "list events",
    )
    .into_iter()
    .filter(|e| e.kind == kind)
    .collect()
}

/// Scores are 0 to 100 with a breakdown summing to the total, stored with the model
/// version; the first score and every tier change emit `contact.scored`, reaching Hot
/// emits `lead.qualified`, and an unchanged tier emits nothing.
pub async fn scorer_scores_within_bounds_and_emits_tier_events(store: Arc<DynStore>) {
    let w = world(store).await;
    let hot = hot_contact(&w).await;
    let cold = contact(&*w.store, w.ws).await.id;
    let report = w
        .scorer
        .rescore_contacts(w.ws, &[hot, cold], "t1")
        .await
        .expect("rescore");
    assert_eq!(
        (report.scored, report.tier_changes, report.qualified),
        (2, 2, 1)
    );
    let s = ok(w.store.get_contact_score(w.ws, hot).await, "get").expect("scored");
    assert_eq!((s.total, s.tier), (84, Tier::Hot));
    assert_eq!(s.model_version, w.model.version);
    let sum: i64 = s.breakdown.iter().map(|c| i64::from(c.centipoints)).sum();
    assert_eq!(
        sum,
        i64::from(s.total) * 100,
        "the breakdown sums to the total"
    );
    let c = ok(w.store.get_contact_score(w.ws, cold).await, "get").expect("scored");
    assert_eq!((c.total, c.tier), (0, Tier::Cold));

    let scored = events(&w, CONTACT_SCORED).await;
    assert_eq!(scored.len(), 2, "one contact.scored per first score");
    let hot_event = scored
        .iter()
        .find(|e| e.subject == hot.to_string())
        .expect("hot");
    assert_eq!(hot_event.payload["tier"], json!("hot"));
    assert_eq!(hot_event.payload["previous_tier"], json!(null));
    let qualified = events(&w, LEAD_QUALIFIED).await;
    assert_eq!(qualified.len(), 1);
    assert_eq!(qualified[0].subject, hot.to_string());

    let again = w
        .scorer
        .rescore_contacts(w.ws, &[hot, cold], "t2")
        .await
        .expect("rescore again");
    assert_eq!((again.scored, again.tier_changes), (2, 0));
    assert_eq!(
        events(&w, CONTACT_SCORED).await.len(),
        2,
        "no change, no event"
    );
}

/// The nightly run decays behavior and intent: 40 days later the clicks count nothing
/// and the demo request (half-life 30 days) counts `2^(-40/30)`, about 40 %, of its
/// points: firmographic 30 + intent 11.9 = 41, the tier drops from Hot to Cold, and
/// the event carries the previous tier.
pub async fn decay_lowers_tiers_and_reports_the_previous_one(store: Arc<DynStore>) {
    let w = world(store).await;
    let hot = hot_contact(&w).await;
    w.scorer
        .rescore_all(w.ws, "night-0")
        .await
        .expect("rescore");
    w.clock.advance(Duration::days(40));
    let job = crm_core::scoring::nightly_decay(w.ws)
        .expect("periodic job")
        .job_at(w.clock.now())
        .expect("job");
    RescoreAllHandler::new(w.scorer.clone())
        .handle(&job, &JobContext::new("w", w.clock.now(), 1))
        .await
        .expect("decay run");
    let s = ok(w.store.get_contact_score(w.ws, hot).await, "get").expect("scored");
    assert_eq!(
        (s.total, s.tier),
        (41, Tier::Cold),
        "behavior decayed to nothing, intent to 40 %"
    );
    let scored = events(&w, CONTACT_SCORED).await;
    let last = scored.last().expect("event");
    assert_eq!(
        (
            last.payload["previous_tier"].clone(),
            last.payload["tier"].clone()
        ),
        (json!("hot"), json!("cold"))
    );
}

/// Saving a model version enqueues one bulk rescore (idempotent per version); running
/// it rescores every contact with the new version.
pub async fn model_change_enqueues_a_bulk_rescore(store: Arc<DynStore>) {
    let w = world(store).await;
    let hot = hot_contact(&w).await;
    let mut v2 = w.model.next_version(w.clock.now());
    v2.weights.firmographic = 10;
    v2.weights.behavioral = 60;
    let v2 = w.scorer.save_model(&v2).await.expect("save v2");
    w.scorer
        .request_rescore(w.ws, v2.version)
        .await
        .expect("a repeated request is harmless");
    let jobs = ok(
        w.store
            .list_jobs(w.ws, Some(JobStatus::Queued), Page::first(100))
            .await,
        "list jobs",
    );
    let bulk: Vec<_> = jobs.iter().filter(|j| j.kind == RESCORE_ALL).collect();
    assert_eq!(bulk.len(), 2, "one bulk rescore per model version");
    let job = bulk
        .iter()
        .find(|j| j.payload["model_version"] == json!(2))
        .expect("v2 job");
    RescoreAllHandler::new(w.scorer.clone())
        .handle(job, &JobContext::new("w", w.clock.now(), 1))
        .await
        .expect("bulk rescore");
    let s = ok(w.store.get_contact_score(w.ws, hot).await, "get").expect("scored");
    assert_eq!(s.model_version, 2);
    // firmographic 100 * 10% + behavioral 60 * 60% + intent 100 * 30% = 76
    assert_eq!(s.total, 76);
    assert!(matches!(
        w.scorer.save_model(&v2).await,
        Err(ScoringError::Store { ref source, .. }) if source.kind() == StoreErrorKind::VersionConflict
    ));
}

/// An override needs a reason, is audited, decides the tier and emits tier events.
pub async fn override_needs_a_reason_and_is_audited(store: Arc<DynStore>) {
    let w = world(store).await;
    let c = contact(&*w.store, w.ws).await.id;
    w.scorer
        .rescore_contacts(w.ws, &[c], "t")
        .await
        .expect("rescore");
    let blank = w
        .scorer
        .override_score(w.ws, c, 95, "  ", Actor::System)
        .await;
    assert!(
        matches!(blank, Err(ScoringError::Invalid(_))),
        "a reason is required"
    );
    let written = w
        .scorer
        .override_score(w.ws, c, 95, "Signed the LOI", Actor::System)
        .await
        .expect("override");
    assert_eq!(
        (written.previous, written.current),
        (Some(Tier::Cold), Tier::SalesReady)
    );
    let audit = ok(
        w.store
            .list_audit(w.ws, Some(&c.to_string()), Page::first(10))
            .await,
        "list audit",
    );
    assert_eq!(audit.len(), 1, "the override is audited");
    assert_eq!(audit[0].details["reason"], json!("Signed the LOI"));
    assert_eq!(events(&w, LEAD_QUALIFIED).await.len(), 1);
    w.scorer
        .rescore_contacts(w.ws, &[c], "t2")
        .await
        .expect("rescore");
    let s = ok(w.store.get_contact_score(w.ws, c).await, "get").expect("scored");
    assert_eq!(
        s.effective_tier(),
        Tier::SalesReady,
        "recomputation keeps the override"
    );
    let blank = w.scorer.clear_override(w.ws, c, "", Actor::System).await;
    assert!(
        matches!(blank, Err(ScoringError::Invalid(_))),
        "clearing needs a reason too"
    );
    let cleared = w
        .scorer
        .clear_override(w.ws, c, "LOI withdrawn", Actor::System)
        .await
        .expect("clear");
    assert_eq!(
        (cleared.previous, cleared.current),
        (Some(Tier::SalesReady), Tier::Cold)
    );
    let audit = ok(
        w.store
            .list_audit(w.ws, Some(&c.to_string()), Page::first(10))
            .await,
        "list audit",
    );
    assert_eq!(audit.len(), 2, "clearing is audited");
    let last = events(&w, CONTACT_SCORED).await;
    assert_eq!(last.last().expect("event").payload["tier"], json!("cold"));
}

/// A score computed under version 1 is explained by version 1 after the model moved on.
pub async fn old_scores_stay_explainable(store: Arc<DynStore>) {
    let w = world(store).await;
    let hot = hot_contact(&w).await;
    w.scorer
        .rescore_contacts(w.ws, &[hot], "t")
        .await
        .expect("rescore");
    let mut v2 = w.model.next_version(w.clock.now());
    v2.thresholds.hot = 85;
    w.store.save_scoring_model(&v2).await.expect("save v2");
    let s = ok(w.store.get_contact_score(w.ws, hot).await, "get").expect("scored");
    let model = ok(
        w.store.get_scoring_model(w.ws, s.model_version).await,
        "model",
    );
    let inputs = ok(
        w.store
            .scoring_inputs_for(w.ws, &[hot], Scorer::activity_since(&model, s.computed_at))
            .await,
        "inputs",
    );
    let again = explain(&model, &inputs[0], s.computed_at);
    assert_eq!(
        again.contributions, s.breakdown,
        "the stored breakdown is reproducible"
    );
    assert_eq!(again.score.tier, s.tier);
}

/// `activity.logged` (and the other triggers) enqueue a rescore of the event's contact.
pub async fn events_route_to_contact_rescoring(store: Arc<DynStore>) {
    let w = world(store).await;
    let hot = hot_contact(&w).await;
    let bus = EventBus::new(
        w.store.clone(),
        scoring_routes(EventRoutes::new()),
        w.clock.clone(),
    );
    let event = NewEvent::new(
        w.ws,
        "activity.logged",
        "activity-1",
        json!({ "contact_id": hot }),
        "activity.logged:1",
        w.clock.now(),
    )
    .expect("event");
    assert!(ok(bus.publish(&event).await, "publish").created);
    let jobs = ok(
        w.store
            .list_jobs(w.ws, Some(JobStatus::Queued), Page::first(100))
            .await,
        "list jobs",
    );
    let job = jobs
        .iter()
        .find(|j| j.kind == RESCORE_CONTACT)
        .expect("a rescore job");
    RescoreContactHandler::new(w.scorer.clone())
        .handle(job, &JobContext::new("w", w.clock.now(), 1))
        .await
        .expect("handle");
    let s = ok(w.store.get_contact_score(w.ws, hot).await, "get").expect("scored");
    assert_eq!(s.tier, Tier::Hot);
}
