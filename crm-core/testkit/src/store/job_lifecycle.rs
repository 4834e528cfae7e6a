//! Cases for the lease-checked life of a [`JobStore`](crm_core::store::JobStore) job:
//! complete, retry, dead letter, release, reap.

use chrono::Duration;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::JobStatus;
use crm_core::store::{MAX_CLOCK_SKEW, Scope};

use super::fixtures::{at, claim_at, claim_one_job, expect_err, job_due, ok, running_job, token};
use super::jobs::settled;

/// complete_job marks a running job Succeeded, only with its current token.
pub async fn job_complete_is_lease_checked(store: &DynStore) {
    let ws = WorkspaceId::new();
    let job = running_job(store, ws, 3).await;
    let lease_token = token(job.lease.as_ref());
    expect_err(
        store.complete_job(ws, job.id, lease_token + 1, at(1)).await,
        Kind::LeaseLost,
        "complete_job with a token that is not the job's",
    );
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get"),
        job,
        "a refused completion changes nothing"
    );
    let done = ok(
        store.complete_job(ws, job.id, lease_token, at(1)).await,
        "complete_job",
    );
    let mut expected = job.clone();
    expected.status = JobStatus::Succeeded;
    assert_eq!(
        settled(&done),
        settled(&expected),
        "complete_job sets Succeeded"
    );
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get"),
        done,
        "the completion is stored"
    );
    expect_err(
        store.complete_job(ws, job.id, lease_token, at(2)).await,
        Kind::LeaseLost,
        "complete_job of a job that is no longer Running",
    );
    let queued = job_due(store, ws, at(100)).await;
    expect_err(
        store.complete_job(ws, queued.id, 1, at(2)).await,
        Kind::LeaseLost,
        "complete_job of a job that was never claimed",
    );
}

/// retry_job requeues at retry_at while attempts < max_attempts, else the job is Dead;
/// the error is stored either way.
pub async fn job_retry_until_dead(store: &DynStore) {
    let ws = WorkspaceId::new();
    let first = running_job(store, ws, 2).await;
    let retried = ok(
        store
            .retry_job(ws, first.id, token(first.lease.as_ref()), at(10), "timeout")
            .await,
        "retry_job",
    );
    let mut expected = first.clone();
    expected.status = JobStatus::Queued;
    expected.run_at = at(10);
    expected.last_error = Some("timeout".into());
    assert_eq!(
        settled(&retried),
        settled(&expected),
        "retry_job requeues at retry_at with the error"
    );
    assert!(
        ok(store.claim_jobs(&claim_at(ws, "w", at(9))).await, "claim").is_empty(),
        "not due before retry_at"
    );
    let second = claim_one_job(store, ws, at(10)).await;
    assert_eq!(second.attempts, 2, "the second claim is the second attempt");
    assert_eq!(
        token(second.lease.as_ref()),
        token(first.lease.as_ref()) + 1,
        "its token is one greater"
    );
    let dead = ok(
        store
            .retry_job(
                ws,
                second.id,
                token(second.lease.as_ref()),
                at(20),
                "timeout again",
            )
            .await,
        "retry_job",
    );
    assert_eq!(
        dead.status,
        JobStatus::Dead,
        "retry_job with attempts exhausted sets Dead"
    );
    assert_eq!(
        dead.last_error.as_deref(),
        Some("timeout again"),
        "the error is stored"
    );
    assert!(
        ok(store.claim_jobs(&claim_at(ws, "w", at(600))).await, "claim").is_empty(),
        "dead jobs never run"
    );
    expect_err(
        store
            .retry_job(ws, second.id, token(second.lease.as_ref()), at(30), "x")
            .await,
        Kind::LeaseLost,
        "retry_job of a job that is no longer Running",
    );
}

/// dead_letter_job moves a running job to Dead with the reason, only with its token.
pub async fn job_dead_letter(store: &DynStore) {
    let ws = WorkspaceId::new();
    let job = running_job(store, ws, 5).await;
    let lease_token = token(job.lease.as_ref());
    expect_err(
        store
            .dead_letter_job(ws, job.id, lease_token - 1, "bad payload", at(1))
            .await,
        Kind::LeaseLost,
        "dead_letter_job with a token that is not the job's",
    );
    let dead = ok(
        store
            .dead_letter_job(ws, job.id, lease_token, "bad payload", at(1))
            .await,
        "dead_letter_job",
    );
    let mut expected = job.clone();
    expected.status = JobStatus::Dead;
    expected.last_error = Some("bad payload".into());
    assert_eq!(
        settled(&dead),
        settled(&expected),
        "dead_letter_job sets Dead with the reason"
    );
    expect_err(
        store
            .dead_letter_job(ws, job.id, lease_token, "again", at(2))
            .await,
        Kind::LeaseLost,
        "dead_letter_job of a job that is no longer Running",
    );
}

/// release_job requeues a running job due at now and gives the claim's attempt back.
pub async fn job_release_gives_attempt_back(store: &DynStore) {
    let ws = WorkspaceId::new();
    let job = running_job(store, ws, 5).await;
    let lease_token = token(job.lease.as_ref());
    let released = ok(
        store.release_job(ws, job.id, lease_token, at(3)).await,
        "release_job",
    );
    let mut expected = job.clone();
    expected.status = JobStatus::Queued;
    expected.run_at = at(3);
    expected.attempts = 0;
    assert_eq!(
        settled(&released),
        settled(&expected),
        "release_job: Queued, due at now, attempt not counted"
    );
    let again = claim_one_job(store, ws, at(3)).await;
    assert_eq!(
        again.attempts, 1,
        "the next claim is the first counted attempt"
    );
    assert_eq!(
        token(again.lease.as_ref()),
        lease_token + 1,
        "the next claim's token is one greater"
    );
    expect_err(
        store.release_job(ws, job.id, lease_token, at(4)).await,
        Kind::LeaseLost,
        "release_job with the token of an earlier claim",
    );
}

/// After a reap and re-claim every lease-checked call refuses the old token; an expired
/// lease nobody re-claimed still completes (the token, not the clock, decides).
pub async fn job_stale_token_refused_after_reclaim(store: &DynStore) {
    let ws = WorkspaceId::new();
    let stale = running_job(store, ws, 5).await;
    let old = token(stale.lease.as_ref());
    assert_eq!(
        ok(
            store.reap_expired_jobs(Scope::Workspace(ws), at(10)).await,
            "reap"
        ),
        1,
        "the lease expired"
    );
    let fresh = claim_one_job(store, ws, at(10)).await;
    assert_eq!(
        token(fresh.lease.as_ref()),
        old + 1,
        "the re-claim's token is one greater"
    );
    let rule = "a lease-checked call with the token of a lease taken over";
    expect_err(
        store.complete_job(ws, stale.id, old, at(11)).await,
        Kind::LeaseLost,
        rule,
    );
    expect_err(
        store.retry_job(ws, stale.id, old, at(11), "x").await,
        Kind::LeaseLost,
        rule,
    );
    expect_err(
        store.dead_letter_job(ws, stale.id, old, "x", at(11)).await,
        Kind::LeaseLost,
        rule,
    );
    expect_err(
        store.release_job(ws, stale.id, old, at(11)).await,
        Kind::LeaseLost,
        rule,
    );
    assert_eq!(
        ok(store.get_job(ws, stale.id).await, "get"),
        fresh,
        "the new holder's claim is untouched"
    );
    let late = ok(
        store.complete_job(ws, fresh.id, old + 1, at(600)).await,
        "complete_job after expiry",
    );
    assert_eq!(
        late.status,
        JobStatus::Succeeded,
        "an expired lease nobody re-claimed can still complete"
    );
}

/// reap_expired_jobs requeues (due at now) or kills ("lease expired") every Running job
/// whose lease expired at or before now - MAX_CLOCK_SKEW, and counts them.
pub async fn job_reap_expired_leases(store: &DynStore) {
    let ws = WorkspaceId::new();
    let spare = running_job(store, ws, 5).await;
    let last_try = running_job(store, ws, 1).await;
    job_due(store, ws, at(3)).await;
    let late = claim_one_job(store, ws, at(3)).await;
    let reap = |now| store.reap_expired_jobs(Scope::Workspace(ws), now);
    assert_eq!(ok(reap(at(4)).await, "reap"), 0, "no lease has expired yet");
    let past_skew = at(5) + MAX_CLOCK_SKEW;
    assert_eq!(
        ok(reap(past_skew - Duration::microseconds(1)).await, "reap"),
        0,
        "a lease that expired less than MAX_CLOCK_SKEW ago is not reaped"
    );
    assert_eq!(
        ok(reap(past_skew).await, "reap"),
        2,
        "leases expiring exactly at now - MAX_CLOCK_SKEW are reaped, dead ones counted"
    );
    let requeued = ok(store.get_job(ws, spare.id).await, "get");
    assert_eq!(
        (requeued.status, requeued.run_at),
        (JobStatus::Queued, past_skew),
        "a reaped job with attempts left is Queued, due at now"
    );
    let dead = ok(store.get_job(ws, last_try.id).await, "get");
    assert_eq!(
        dead.status,
        JobStatus::Dead,
        "a reaped job without attempts left is Dead"
    );
    assert_eq!(
        dead.last_error.as_deref(),
        Some("lease expired"),
        "with reason \"lease expired\""
    );
    assert_eq!(
        ok(store.get_job(ws, late.id).await, "get"),
        late,
        "an unexpired lease is not reaped"
    );
    assert_eq!(
        ok(reap(past_skew).await, "reap"),
        0,
        "reaping again finds nothing"
    );
}
