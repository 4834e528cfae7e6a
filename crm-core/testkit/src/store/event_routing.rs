//! Cases for routing the events appended without jobs:
//! [`EventStore::list_unrouted_events`](crm_core::store::EventStore::list_unrouted_events)
//! and [`EventStore::mark_events_routed`](crm_core::store::EventStore::mark_events_routed).

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{EventId, WorkspaceId};
use crm_core::model::{Event, JobStatus};
use crm_core::store::{EventStoreExt, Page, Scope};

use super::fixtures::{expect_err, keyed_job, new_event, new_job, ok};

async fn unrouted(store: &DynStore, scope: Scope, limit: u32) -> Vec<EventId> {
    ok(
        store.list_unrouted_events(scope, limit).await,
        "list_unrouted_events",
    )
    .iter()
    .map(|e| e.id)
    .collect()
}

async fn append(store: &DynStore, ws: WorkspaceId, key: &str) -> Event {
    ok(
        store.append_event(&new_event(ws, key)).await,
        "append_event",
    )
    .value
}

/// Events appended without jobs are listed oldest first, within the scope and the
/// limit; one appended with its jobs never is; a retried append adds nothing.
pub async fn unrouted_events_are_listed_oldest_first(store: &DynStore) {
    let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
    let first = append(store, a, "one").await;
    let other = append(store, b, "two").await;
    let third = append(store, a, "three").await;
    assert_eq!(append(store, a, "one").await.id, first.id, "a retried key");
    let with_jobs = ok(
        store
            .append_event_with_jobs(&new_event(a, "routed"), &[keyed_job(a, "routed-job")])
            .await,
        "append_event_with_jobs",
    );
    assert!(with_jobs.created);

    assert_eq!(
        unrouted(store, Scope::Workspace(a), 10).await,
        vec![first.id, third.id],
        "the workspace's unrouted events, oldest first; routed ones never"
    );
    assert_eq!(
        unrouted(store, Scope::Workspace(a), 1).await,
        vec![first.id]
    );
    let all = unrouted(store, Scope::All, 1000).await;
    let ours: Vec<_> = all
        .iter()
        .filter(|id| [first.id, other.id, third.id, with_jobs.value.id].contains(id))
        .copied()
        .collect();
    assert_eq!(
        ours,
        vec![first.id, other.id, third.id],
        "Scope::All, by position"
    );
    for limit in [0, 1001] {
        expect_err(
            store.list_unrouted_events(Scope::All, limit).await,
            Kind::Invalid,
            &format!("list_unrouted_events with limit {limit}"),
        );
    }
}

/// mark_events_routed enqueues the jobs (an existing key is skipped) and marks the
/// events atomically; routed, unknown and foreign ids are ignored and not counted.
pub async fn marking_events_routed_enqueues_their_jobs_once(store: &DynStore) {
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let e1 = append(store, ws, "e1").await;
    let e2 = append(store, ws, "e2").await;
    let foreign = append(store, other, "f").await;
    let existing = ok(store.enqueue_job(&keyed_job(ws, "k-1")).await, "enqueue").value;

    let jobs = [
        keyed_job(ws, "k-1"),
        keyed_job(ws, "k-2"),
        keyed_job(ws, "k-2"),
    ];
    let marked = ok(
        store
            .mark_events_routed(ws, &[e1.id, EventId::new(), foreign.id], &jobs)
            .await,
        "mark_events_routed",
    );
    assert_eq!(marked, 1, "only the workspace's unrouted event is counted");
    assert_eq!(unrouted(store, Scope::Workspace(ws), 10).await, vec![e2.id]);
    assert_eq!(
        unrouted(store, Scope::Workspace(other), 10).await,
        vec![foreign.id],
        "another workspace's event is not marked"
    );
    let stored = ok(
        store
            .list_jobs(ws, Some(JobStatus::Queued), Page::first(10))
            .await,
        "list_jobs",
    );
    let mut keys: Vec<_> = stored
        .iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect();
    keys.sort();
    assert_eq!(keys, ["k-1", "k-2"], "each key enqueued once");
    assert!(
        stored.iter().any(|j| j.id == existing.id),
        "the existing job stays"
    );

    let again = ok(
        store.mark_events_routed(ws, &[e1.id], &jobs).await,
        "mark again",
    );
    assert_eq!(again, 0, "an event routed already is not counted twice");
    assert_eq!(
        ok(store.list_jobs(ws, None, Page::first(10)).await, "list").len(),
        2,
        "and its jobs exist once"
    );
    assert_eq!(
        ok(store.mark_events_routed(ws, &[e2.id], &[]).await, "no jobs"),
        1,
        "an event whose kind has no route is marked with no jobs"
    );
    assert!(unrouted(store, Scope::Workspace(ws), 10).await.is_empty());
}

/// A job without a key or of another workspace is Invalid and nothing is written.
pub async fn marking_events_routed_checks_its_jobs(store: &DynStore) {
    let ws = WorkspaceId::new();
    let e = append(store, ws, "e").await;
    let unkeyed = new_job(ws, "conformance.triggered", 3);
    let foreign = keyed_job(WorkspaceId::new(), "elsewhere");
    for (jobs, why) in [
        (vec![keyed_job(ws, "fine"), unkeyed], "a job without a key"),
        (
            vec![keyed_job(ws, "fine"), foreign],
            "a job of another workspace",
        ),
    ] {
        expect_err(
            store.mark_events_routed(ws, &[e.id], &jobs).await,
            Kind::Invalid,
            why,
        );
        assert_eq!(
            unrouted(store, Scope::Workspace(ws), 10).await,
            vec![e.id],
            "{why}: the event stays unrouted"
        );
        assert!(
            ok(store.list_jobs(ws, None, Page::first(10)).await, "list").is_empty(),
            "{why}: no job is enqueued"
        );
    }
}
