//! Cases for [`EventStore::append_event_with_jobs`](crm_core::store::EventStore::append_event_with_jobs):
//! an event and the jobs it triggers, written once.

use std::collections::BTreeSet;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::Job;
use crm_core::store::{Page, Scope};

use super::fixtures::{created, existing, expect_err, keyed_job, new_event, ok, race, unique};

/// The jobs of `ws`, ascending by id.
async fn jobs_of(store: &DynStore, ws: WorkspaceId) -> Vec<Job> {
    ok(
        store.list_jobs(ws, None, Page::first(100)).await,
        "list_jobs",
    )
}

/// The idempotency keys of `jobs`.
fn keys(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter()
        .filter_map(|j| j.idempotency_key.clone())
        .collect()
}

/// append_event_with_jobs enqueues with a new event only, each job once per key.
pub async fn event_append_with_jobs_enqueues_once(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("event");
    let event = new_event(ws, &key);
    let jobs = [keyed_job(ws, &unique("job")), keyed_job(ws, &unique("job"))];
    let stored = created(
        store.append_event_with_jobs(&event, &jobs).await,
        "append_event_with_jobs",
    );
    assert_eq!(
        ok(store.get_event(ws, event.id).await, "get_event"),
        stored,
        "the event is stored"
    );
    let mut expected = jobs.to_vec();
    expected.sort_by_key(|j| j.id);
    assert_eq!(
        jobs_of(store, ws).await,
        expected,
        "every job is enqueued with the event, as given"
    );

    let retry = new_event(ws, &key);
    let late = keyed_job(ws, &unique("job"));
    let again = existing(
        store
            .append_event_with_jobs(&retry, &[jobs[0].clone(), late.clone()])
            .await,
        "append_event_with_jobs of a duplicate event",
    );
    assert_eq!(again, stored, "the existing event is returned unchanged");
    assert_eq!(
        jobs_of(store, ws).await,
        expected,
        "a duplicate event enqueues nothing, not even new jobs"
    );

    let mut reused = keyed_job(ws, "unused");
    reused.idempotency_key = jobs[1].idempotency_key.clone();
    let fresh = keyed_job(ws, &unique("job"));
    created(
        store
            .append_event_with_jobs(
                &new_event(ws, &unique("event")),
                &[reused.clone(), fresh.clone()],
            )
            .await,
        "append_event_with_jobs of a new event",
    );
    let listed = jobs_of(store, ws).await;
    assert_eq!(
        listed.len(),
        3,
        "a job whose key exists is not enqueued again"
    );
    assert!(
        listed.iter().all(|j| j.id != reused.id) && listed.iter().any(|j| j.id == fresh.id),
        "the stored job keeps its key; the new job is enqueued"
    );
    let events = ok(
        store.list_events(Scope::Workspace(ws), 0, 10).await,
        "list_events",
    );
    assert_eq!(events.len(), 2, "two distinct events are stored");
}

/// A job without a key or of another workspace is Invalid and nothing is written.
pub async fn event_append_with_jobs_validates_every_job(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let good = keyed_job(ws, &unique("job"));
    let mut keyless = keyed_job(ws, "unused");
    keyless.idempotency_key = None;
    let foreign = keyed_job(other, &unique("job"));
    let mut blank_kind = keyed_job(ws, &unique("job"));
    blank_kind.kind = " ".into();
    for (bad, what) in [
        (keyless, "a job without an idempotency key"),
        (foreign, "a job of another workspace"),
        (blank_kind, "an invalid job"),
    ] {
        let event = new_event(ws, &unique("event"));
        expect_err(
            store
                .append_event_with_jobs(&event, &[good.clone(), bad])
                .await,
            Kind::Invalid,
            what,
        );
        expect_err(
            store.get_event(ws, event.id).await,
            Kind::NotFound,
            &format!("{what}: the event is not appended"),
        );
    }
    for workspace in [ws, other] {
        assert!(
            jobs_of(store, workspace).await.is_empty(),
            "refused appends enqueue no job"
        );
        assert!(
            ok(
                store.list_events(Scope::Workspace(workspace), 0, 10).await,
                "list_events",
            )
            .is_empty(),
            "refused appends store no event"
        );
    }
}

/// 16 racing appends of one event with jobs create it once and enqueue each job once.
pub async fn concurrent_event_append_with_jobs_enqueues_once(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("event");
    let job_keys = [unique("job"), unique("job"), unique("job")];
    let (key, job_keys) = (key.as_str(), &job_keys);
    let results = race(16, |_| async move {
        let jobs: Vec<Job> = job_keys.iter().map(|k| keyed_job(ws, k)).collect();
        ok(
            store
                .append_event_with_jobs(&new_event(ws, key), &jobs)
                .await,
            "append_event_with_jobs",
        )
    })
    .await;
    assert_eq!(
        results.iter().filter(|r| r.created).count(),
        1,
        "exactly one racing append creates the event"
    );
    let jobs = jobs_of(store, ws).await;
    assert_eq!(jobs.len(), 3, "each job is enqueued exactly once");
    assert_eq!(
        keys(&jobs),
        job_keys.iter().cloned().collect(),
        "with the racing jobs' keys"
    );
}
