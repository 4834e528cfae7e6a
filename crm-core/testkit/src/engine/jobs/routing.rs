//! Event router scenarios: the events stores append with their changes reach the
//! routes, once.

use std::sync::Arc;

use serde_json::json;

use super::{clock, jobs_with};
use crate::store::fixtures::{base, contact, ok, unique};
use crm_core::DynStore;
use crm_core::events::kinds;
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{EventBus, EventRouter, EventRoutes, RouteReport};
use crm_core::model::NewEvent;
use crm_core::store::Scope;

/// A contact inserted through the store (no bus involved) gets its routed jobs from
/// the router, keyed as the bus keys them; a second pass routes nothing; an event the
/// bus published with its jobs is never routed again; another workspace's events wait
/// for their own scope.
pub async fn router_routes_store_appended_events_once(store: Arc<DynStore>) {
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let (_manual, clock) = clock();
    let routes = EventRoutes::new()
        .route(kinds::CONTACT_CREATED, "scoring.recompute")
        .route_with(
            kinds::CONTACT_CREATED,
            "enrich.contact",
            |e| json!({ "contact": e.subject }),
        );
    let ada = contact(&*store, ws).await;
    contact(&*store, other).await;
    let bus = EventBus::new(store.clone(), routes.clone(), clock.clone());
    let published = NewEvent::new(
        ws,
        kinds::CONTACT_CREATED,
        "c-bus",
        json!({}),
        unique("bus"),
        base(),
    )
    .expect("valid event");
    ok(bus.publish(&published).await, "publish");

    let router = EventRouter::new(store.clone(), routes, clock);
    let report = ok(
        router.route_pending(Scope::Workspace(ws), 100).await,
        "route",
    );
    assert_eq!(
        report,
        RouteReport {
            listed: 1,
            routed: 1,
            jobs: 2,
            unroutable: 0
        },
        "only the store's contact.created; the bus routed its own"
    );
    let created = ok(
        store.list_events(Scope::Workspace(ws), 0, 100).await,
        "events",
    )
    .into_iter()
    .find(|e| e.subject == ada.id.to_string())
    .expect("the contact's event");
    let jobs = jobs_with(&*store, ws, None).await;
    let mut keys: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .filter(|k| k.starts_with(&created.id.to_string()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{}:enrich.contact", created.id),
            format!("{}:scoring.recompute", created.id)
        ]
    );
    assert!(
        jobs.iter()
            .any(|j| j.payload == json!({ "contact": ada.id.to_string() })),
        "the projection ran on the stored event"
    );
    assert_eq!(
        jobs.len(),
        4,
        "two for the store's event, two for the bus's"
    );

    let again = ok(
        router.route_pending(Scope::Workspace(ws), 100).await,
        "again",
    );
    assert_eq!(
        again,
        RouteReport::default(),
        "routed events are never relisted"
    );
    assert_eq!(jobs_with(&*store, ws, None).await.len(), 4);

    let rest = ok(router.route_pending(Scope::All, 100).await, "the rest");
    assert_eq!((rest.listed, rest.routed, rest.jobs), (1, 1, 2));
    assert_eq!(jobs_with(&*store, other, None).await.len(), 2);
}
