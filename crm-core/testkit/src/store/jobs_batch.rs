//! Cases for the batch forms of [`JobStore`](crm_core::store::JobStore): bulk enqueue
//! and batched completion.

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{JobId, WorkspaceId};
use crm_core::model::JobStatus;
use crm_core::store::Claim;

use super::fixtures::{at, base, claim_at, expect_err, new_job, ok, running_job, token, unique};

/// enqueue_jobs stores each job as enqueue_job would, in order, in one call: keys
/// optional, a stored key answers its job unchanged, a key repeated in the batch
/// keeps its first job.
pub async fn job_enqueue_batch_keys_optional_and_idempotent(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("bulk");
    let stored = new_job(ws, "conformance.work", 3).with_idempotency_key(key.clone());
    ok(store.enqueue_job(&stored).await, "enqueue_job");

    let plain = [
        new_job(ws, "conformance.work", 3),
        new_job(ws, "conformance.work", 3).with_run_at(at(7)),
    ];
    let fresh_key = unique("bulk");
    let first_of_key = new_job(ws, "conformance.work", 3).with_idempotency_key(fresh_key.clone());
    let repeat_of_key = new_job(ws, "other.kind", 2).with_idempotency_key(fresh_key);
    let reused = new_job(ws, "other.kind", 2).with_idempotency_key(key);
    let batch = vec![
        plain[0].clone(),
        first_of_key.clone(),
        reused.clone(),
        plain[1].clone(),
        repeat_of_key.clone(),
    ];
    let answers = ok(store.enqueue_jobs(&batch).await, "enqueue_jobs");
    let got: Vec<(JobId, bool)> = answers.iter().map(|a| (a.value.id, a.created)).collect();
    assert_eq!(
        got,
        vec![
            (plain[0].id, true),
            (first_of_key.id, true),
            (stored.id, false),
            (plain[1].id, true),
            (first_of_key.id, false),
        ],
        "one answer per job, in order: new jobs created, keys answered by their first job"
    );
    assert_eq!(
        answers[0].value, plain[0],
        "a new job is answered as stored"
    );
    assert_eq!(
        answers[2].value, stored,
        "an existing key answers its job unchanged"
    );
    for job in [&plain[0], &plain[1], &first_of_key] {
        assert_eq!(
            &ok(store.get_job(ws, job.id).await, "get_job"),
            job,
            "each new job is stored as given"
        );
    }
    for job in [&reused, &repeat_of_key] {
        expect_err(
            store.get_job(ws, job.id).await,
            Kind::NotFound,
            "a job whose key was taken is not stored",
        );
    }
    let retried = ok(
        store
            .enqueue_jobs(&[new_job(ws, "conformance.work", 3), first_of_key.clone()])
            .await,
        "enqueue_jobs again",
    );
    assert!(
        retried[0].created,
        "a job without a key is never a duplicate"
    );
    assert_eq!(
        (retried[1].value.id, retried[1].created),
        (first_of_key.id, false),
        "a retried keyed job is not enqueued twice"
    );
    assert!(
        ok(store.enqueue_jobs(&[]).await, "enqueue_jobs of nothing").is_empty(),
        "an empty batch answers an empty list"
    );
}

/// enqueue_jobs is all or none: an invalid job, a non-queued one or a reused id
/// refuses the whole batch and writes nothing.
pub async fn job_enqueue_batch_is_all_or_none(store: &DynStore) {
    let ws = WorkspaceId::new();
    let taken = new_job(ws, "conformance.work", 3);
    ok(store.enqueue_job(&taken).await, "enqueue_job");
    let good = new_job(ws, "conformance.work", 3);
    let mut blank = new_job(ws, "conformance.work", 3);
    blank.kind = " ".into();
    let mut running = new_job(ws, "conformance.work", 3);
    running.status = JobStatus::Running;
    let mut same_id = new_job(ws, "conformance.work", 3);
    same_id.id = taken.id;
    let mut twice = new_job(ws, "conformance.work", 3);
    twice.id = good.id;
    for (bad, kind, what) in [
        (blank, Kind::Invalid, "a blank kind"),
        (running, Kind::Invalid, "a job that is not queued"),
        (same_id, Kind::Conflict, "an id already stored"),
        (twice, Kind::Conflict, "an id used twice in the batch"),
    ] {
        expect_err(
            store.enqueue_jobs(&[good.clone(), bad]).await,
            kind,
            &format!("enqueue_jobs with {what}"),
        );
        expect_err(
            store.get_job(ws, good.id).await,
            Kind::NotFound,
            &format!("a batch refused for {what} wrote nothing"),
        );
    }
}

/// complete_jobs completes each entry held under its token and answers the others as
/// complete_job would, in order; one entry's failure never affects another.
pub async fn job_complete_batch_is_lease_checked_per_job(store: &DynStore) {
    let ws = WorkspaceId::new();
    let held = [
        running_job(store, ws, 3).await,
        running_job(store, ws, 3).await,
    ];
    let stale = running_job(store, ws, 3).await;
    let queued = new_job(ws, "conformance.work", 3).with_run_at(at(60));
    ok(store.enqueue_job(&queued).await, "enqueue_job");
    let other_ws = running_job(store, WorkspaceId::new(), 3).await;
    let t = |j: &crm_core::model::Job| token(j.lease.as_ref());
    let entries = vec![
        (ws, held[0].id, t(&held[0])),
        (ws, stale.id, t(&stale) + 1),
        (ws, JobId::new(), 1),
        (ws, queued.id, 1),
        (ws, other_ws.id, t(&other_ws)),
        (ws, held[1].id, t(&held[1])),
        (ws, held[0].id, t(&held[0])),
    ];
    let answers = ok(store.complete_jobs(&entries, at(3)).await, "complete_jobs");
    let kinds: Vec<Option<Kind>> = answers
        .iter()
        .map(|a| a.as_ref().err().map(|e| e.kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some(Kind::LeaseLost),
            Some(Kind::NotFound),
            Some(Kind::LeaseLost),
            Some(Kind::NotFound),
            None,
            Some(Kind::LeaseLost),
        ],
        "held entries complete; a wrong token, a job not running, an unknown id, another \
         workspace's job and a second entry of a completed job are refused"
    );
    for job in &held {
        let done = ok(store.get_job(ws, job.id).await, "get_job");
        assert_eq!(done.status, JobStatus::Succeeded, "a held job is completed");
        assert!(done.lease.is_none(), "completion clears the lease");
        assert_eq!(done.updated_at, at(3), "completion records now");
        assert_eq!(done.attempts, job.attempts, "completion keeps the attempts");
    }
    for (w, job, status) in [
        (ws, &stale, JobStatus::Running),
        (ws, &queued, JobStatus::Queued),
        (other_ws.workspace_id, &other_ws, JobStatus::Running),
    ] {
        let after = ok(store.get_job(w, job.id).await, "get_job");
        assert_eq!(after.status, status, "a refused entry changes nothing");
    }
    ok(
        store.complete_job(ws, stale.id, t(&stale), at(4)).await,
        "the stale entry's job is still held under its own token",
    );
    assert!(
        ok(
            store.complete_jobs(&[], at(5)).await,
            "complete_jobs of nothing"
        )
        .is_empty(),
        "an empty batch answers an empty list"
    );
}

/// A job completed in a batch after its lease was reaped and reclaimed is refused:
/// the new holder's token decides, as for complete_job.
pub async fn job_complete_batch_refuses_a_reclaimed_job(store: &DynStore) {
    let ws = WorkspaceId::new();
    let first = running_job(store, ws, 3).await;
    let later = base() + chrono::Duration::hours(2);
    ok(
        store
            .reap_expired_jobs(crm_core::store::Scope::Workspace(ws), later)
            .await,
        "reap_expired_jobs",
    );
    let claim: Claim = claim_at(ws, "worker-2", later);
    let again = ok(store.claim_jobs(&claim).await, "claim_jobs");
    assert_eq!(again.len(), 1, "the reaped job is claimed again");
    let old = (ws, first.id, token(first.lease.as_ref()));
    let new = (ws, first.id, token(again[0].lease.as_ref()));
    let answers = ok(
        store.complete_jobs(&[old, new], later).await,
        "complete_jobs",
    );
    assert_eq!(
        answers[0].as_ref().err().map(|e| e.kind()),
        Some(Kind::LeaseLost),
        "the first holder's token is refused"
    );
    assert!(answers[1].is_ok(), "the new holder's token completes it");
    let done = ok(store.get_job(ws, first.id).await, "get_job");
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
}
