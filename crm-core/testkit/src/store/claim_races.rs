//! Races that the per-store test files used to run on one backend only (claims by kind
//! with completions, a lease raced for again after release, appends mixing shared and
//! fresh idempotency keys), now run on every store.

use std::collections::BTreeSet;

use chrono::Duration;
use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Job, JobStatus};
use crm_core::store::{Claim, EventStoreExt, Page, Scope};
use futures::future::join_all;

use super::fixtures::{base, created, expect_err, new_event, new_job, ok, race, token, unique};

/// How many callers race in each case.
const RACERS: usize = 16;

/// 16 workers claiming only jobs of one kind, and completing each as they go, never
/// share a job, complete every job of that kind once, and leave the other kind queued.
pub async fn concurrent_kind_claims_with_completions_never_overlap(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (wanted, other) = (unique("wanted"), unique("other"));
    let enqueue = |i: usize| {
        let kind = if i.is_multiple_of(2) { &wanted } else { &other };
        let job = new_job(ws, kind, Job::DEFAULT_MAX_ATTEMPTS);
        async move { created(store.enqueue_job(&job).await, "enqueue_job") }
    };
    let jobs = join_all((0..120).map(enqueue)).await;
    let expected: BTreeSet<_> = jobs
        .iter()
        .filter(|j| j.kind == wanted)
        .map(|j| j.id)
        .collect();
    let wanted = wanted.as_str();
    let claimed = race(RACERS, |i| async move {
        let claim = Claim::new(
            Scope::Workspace(ws),
            format!("worker-{i}"),
            base(),
            Duration::minutes(5),
            3,
        )
        .with_kinds([wanted]);
        let mut mine = Vec::new();
        loop {
            let batch = ok(store.claim_jobs(&claim).await, "claim_jobs");
            if batch.is_empty() {
                break mine;
            }
            for job in batch {
                assert_eq!(job.kind, wanted, "only the asked-for kind is claimed");
                let done = ok(
                    store
                        .complete_job(ws, job.id, token(job.lease.as_ref()), base())
                        .await,
                    "complete_job while others claim",
                );
                assert_eq!(
                    done.status,
                    JobStatus::Succeeded,
                    "the claimer completes it"
                );
                mine.push(job.id);
            }
        }
    })
    .await;
    let all: Vec<_> = claimed.into_iter().flatten().collect();
    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "concurrent claimers MUST never receive the same job"
    );
    assert_eq!(distinct, expected, "every job of the kind is claimed");
    let page = Page::first(200);
    let succeeded = ok(
        store.list_jobs(ws, Some(JobStatus::Succeeded), page).await,
        "list_jobs",
    );
    assert_eq!(
        succeeded.iter().map(|j| j.id).collect::<BTreeSet<_>>(),
        expected,
        "each claimed job succeeded"
    );
    let queued = ok(
        store.list_jobs(ws, Some(JobStatus::Queued), page).await,
        "list_jobs",
    );
    assert!(
        queued.len() == jobs.len() - expected.len()
            && queued.iter().all(|j| j.kind != wanted && j.attempts == 0),
        "jobs of other kinds stay queued and unclaimed"
    );
}

/// 16 holders race for a free lease: the winner gets token 1. Once it releases, a second
/// race again has exactly one winner, with token 2, and the first grant is dead.
pub async fn concurrent_lease_race_after_release_passes_it_on(store: &DynStore) {
    let ws = WorkspaceId::new();
    let name = unique("runner");
    let name = name.as_str();
    let round = |round: usize| {
        race(RACERS, move |i| async move {
            let holder = format!("holder-{round}-{i}");
            ok(
                store
                    .try_acquire_lease(ws, name, &holder, Duration::minutes(1), base())
                    .await,
                "try_acquire_lease",
            )
        })
    };
    let first: Vec<_> = round(1).await.into_iter().flatten().collect();
    assert_eq!(
        first.len(),
        1,
        "exactly one racing acquirer holds the lease"
    );
    assert_eq!(
        first[0].token, 1,
        "the first holder of a lease gets token 1"
    );
    assert!(
        ok(store.release_lease(&first[0]).await, "release_lease"),
        "the winner releases"
    );
    assert!(
        !ok(store.release_lease(&first[0]).await, "release_lease"),
        "a second release is false"
    );
    let second: Vec<_> = round(2).await.into_iter().flatten().collect();
    assert_eq!(
        second.len(),
        1,
        "after release, again exactly one racing acquirer holds it"
    );
    assert_eq!(second[0].token, 2, "passing the lease on bumps the token");
    expect_err(
        store
            .renew_lease(&first[0], Duration::minutes(1), base())
            .await,
        Kind::LeaseLost,
        "renew_lease by the released holder",
    );
}

/// 16 racing appends, half sharing one idempotency key and half with keys of their own:
/// exactly 1 + 8 events are created, each stored once, in strictly increasing positions.
pub async fn concurrent_mixed_key_appends_create_each_once_in_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let shared = unique("shared");
    let shared = shared.as_str();
    let results = race(RACERS, |i| async move {
        let key = if i.is_multiple_of(2) {
            shared.to_owned()
        } else {
            unique("own")
        };
        ok(
            store.append_event(&new_event(ws, &key)).await,
            "append_event",
        )
    })
    .await;
    let created: Vec<_> = results.iter().filter(|r| r.created).collect();
    assert_eq!(
        created.len(),
        1 + RACERS / 2,
        "one event for the shared key and one for each own key"
    );
    let listed = ok(
        store.list_events(Scope::Workspace(ws), 0, 100).await,
        "list_events",
    );
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<BTreeSet<_>>(),
        created.iter().map(|r| r.value.id).collect::<BTreeSet<_>>(),
        "exactly the created events are stored"
    );
    assert!(
        listed.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase"
    );
}
