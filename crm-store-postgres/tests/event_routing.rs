//! Event routing on PostgreSQL: the `routed` flag of migration 0008 and routers racing
//! the writers that append events. The contract itself (what is listed, what marking
//! does) is checked by the shared conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use crm_core::events::kinds;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Contact, Job, JobStatus, NewContact, NewEvent};
use crm_core::store::{ContactStore, EventStore, JobStore, Page, Scope};
use crm_store_postgres::PostgresStore;
use crm_store_postgres::testing::fresh_store;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
}

fn contact(ws: WorkspaceId, n: usize) -> Contact {
    Contact::create(
        ws,
        NewContact {
            first_name: format!("C{n}"),
            email: Some(format!("c{n}@example.com")),
            ..Default::default()
        },
        t0(),
    )
    .unwrap()
}

/// What a router does with each event: one job keyed by the event.
fn job_for(ws: WorkspaceId, event_id: impl std::fmt::Display) -> Job {
    Job::new(ws, "rescore", json!({}), t0())
        .unwrap()
        .with_idempotency_key(format!("route:{event_id}"))
}

#[tokio::test]
async fn the_migration_routes_the_events_already_in_the_log() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    // The log as migration 0007 left it, holding one event.
    sqlx::raw_sql("DROP INDEX events_unrouted_idx; ALTER TABLE events DROP COLUMN routed")
        .execute(store.pool())
        .await
        .unwrap();
    let old = NewEvent::new(ws, "contact.created", "c", json!({}), "before", t0()).unwrap();
    store.append_events(&[old]).await.unwrap();

    sqlx::raw_sql(include_str!("../migrations/0008_event_routing.sql"))
        .execute(store.pool())
        .await
        .unwrap();

    let listed = store.list_unrouted_events(Scope::All, 10).await.unwrap();
    assert!(
        listed.is_empty(),
        "an event from before the upgrade: {listed:?}"
    );
    let created = store.insert_contact(&contact(ws, 1)).await.unwrap();
    let listed = store
        .list_unrouted_events(Scope::Workspace(ws), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "a new event is unrouted");
    assert_eq!(listed[0].kind, kinds::CONTACT_CREATED);
    assert_eq!(listed[0].subject, created.id.to_string());
}

/// One router pass over `ws`: lists, enqueues a job per event and marks them; answers
/// how many it marked.
async fn route_once(store: &PostgresStore, ws: WorkspaceId) -> u64 {
    let events = store
        .list_unrouted_events(Scope::Workspace(ws), 20)
        .await
        .unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let jobs: Vec<_> = events.iter().map(|e| job_for(ws, e.id)).collect();
    store.mark_events_routed(ws, &ids, &jobs).await.unwrap()
}

/// Two routers race each other and four writers: when everything has settled, every
/// event was routed exactly once (the marks add up to the events) and has exactly one
/// job, and none is left behind, though positions were drawn while routers listed.
#[tokio::test]
async fn racing_routers_route_every_event_once() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 15;
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    store
                        .insert_contact(&contact(ws, w * PER_WRITER + n))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let routers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut marked = 0;
                for _ in 0..40 {
                    marked += route_once(&store, ws).await;
                    tokio::task::yield_now().await;
                }
                marked
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut marked = 0;
    for r in routers {
        marked += r.await.unwrap();
    }
    // What the racing passes left: routed by a last pass.
    loop {
        let n = route_once(&store, ws).await;
        if n == 0 {
            break;
        }
        marked += n;
    }

    let total = WRITERS * PER_WRITER;
    assert_eq!(
        marked, total as u64,
        "each event marked by exactly one router"
    );
    let log = store
        .list_events(Scope::Workspace(ws), 0, 1000)
        .await
        .unwrap();
    assert_eq!(log.len(), total, "one contact.created per contact");
    assert!(
        store
            .list_unrouted_events(Scope::Workspace(ws), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let jobs = store
        .list_jobs(ws, Some(JobStatus::Queued), Page::first(1000))
        .await
        .unwrap();
    let keys: HashSet<_> = jobs
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect();
    assert_eq!(
        jobs.len(),
        total,
        "one job per event, though both routers enqueued"
    );
    let expected: HashSet<_> = log.iter().map(|e| format!("route:{}", e.id)).collect();
    assert_eq!(keys, expected);
}

/// A change and its events are one transaction: when the event log refuses the
/// append (here a trigger stands in for a failing log), the change is not made either.
#[tokio::test]
async fn a_change_whose_event_cannot_be_appended_is_not_made() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let kept = store.insert_contact(&contact(ws, 1)).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'event log unavailable'; END $$;
         CREATE TRIGGER refuse_events BEFORE INSERT ON events
             FOR EACH ROW EXECUTE FUNCTION refuse_events();",
    )
    .execute(store.pool())
    .await
    .unwrap();

    assert!(store.insert_contact(&contact(ws, 2)).await.is_err());
    let mut renamed = kept.clone();
    renamed.first_name = "Renamed".into();
    assert!(store.update_contact(&renamed).await.is_err());

    let contacts = store.list_contacts(ws, Page::first(10)).await.unwrap();
    assert_eq!(
        contacts,
        vec![kept],
        "neither change was made without its event"
    );
}
