//! Cases for [`JobStore`], and claim validation shared with the outbox.

use chrono::{DateTime, Duration, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{JobId, WorkspaceId};
use crm_core::model::{Job, JobStatus};
use crm_core::store::{Claim, Page, Scope};

use super::fixtures::{
    assert_pagination, at, base, claim_at, claim_one_job, created, era, existing, expect_err, ids,
    job_due, lease_ttl, message_due, new_job, ok, running_job, sorted, token, unique,
};

/// `job` with the fields a store may set on its own (lease, updated_at) blanked.
pub(super) fn settled(job: &Job) -> Job {
    let mut job = job.clone();
    job.lease = None;
    job.updated_at = DateTime::UNIX_EPOCH;
    job
}

/// Asserts `after` is `before` claimed by `worker` at `now`: Running, leased until
/// `now + lease_ttl`, attempts + 1, nothing else changed.
#[track_caller]
fn assert_claimed(before: &Job, after: &Job, worker: &str, now: DateTime<Utc>) {
    let lease = after.lease.as_ref().expect("a claimed job carries a lease");
    assert_eq!(
        lease.owner, worker,
        "the lease is owned by the claiming worker"
    );
    assert_eq!(
        lease.expires_at,
        now + lease_ttl(),
        "the lease runs until now + lease_ttl"
    );
    let mut expected = before.clone();
    expected.status = JobStatus::Running;
    expected.attempts += 1;
    assert_eq!(
        settled(after),
        settled(&expected),
        "a claim sets Running and attempts + 1, nothing else"
    );
}

/// enqueue_job round trip; idempotent on (workspace, key); a reused id is Conflict.
pub async fn job_enqueue_round_trip_and_idempotency(store: &DynStore) {
    let ws = WorkspaceId::new();
    let job = new_job(ws, "intake.normalize", 3)
        .with_idempotency_key(unique("job"))
        .with_run_at(at(5));
    let stored = created(store.enqueue_job(&job).await, "enqueue_job");
    assert_eq!(stored, job, "enqueue_job returns the row as stored");
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get_job"),
        job,
        "get_job round trip"
    );

    let mut again = new_job(ws, "other.kind", 5);
    again.idempotency_key = job.idempotency_key.clone();
    let same = existing(
        store.enqueue_job(&again).await,
        "enqueue_job with a used key",
    );
    assert_eq!(same, job, "the existing job is returned unchanged");
    expect_err(
        store.get_job(ws, again.id).await,
        Kind::NotFound,
        "the duplicate was not stored",
    );
    for _ in 0..2 {
        created(
            store.enqueue_job(&new_job(ws, "no.key", 5)).await,
            "jobs without a key are never duplicates",
        );
    }
    let mut foreign = new_job(WorkspaceId::new(), "intake.normalize", 3);
    foreign.idempotency_key = job.idempotency_key.clone();
    created(
        store.enqueue_job(&foreign).await,
        "idempotency keys are per workspace",
    );

    let mut same_id = new_job(ws, "x", 1).with_idempotency_key(unique("job"));
    same_id.id = job.id;
    expect_err(
        store.enqueue_job(&same_id).await,
        Kind::Conflict,
        "enqueue_job with a reused id",
    );
    let mut blank = new_job(ws, "x", 1);
    blank.kind = " ".into();
    expect_err(
        store.enqueue_job(&blank).await,
        Kind::Invalid,
        "enqueue_job with a blank kind",
    );
    let mut no_attempts = new_job(ws, "x", 1);
    no_attempts.max_attempts = 0;
    expect_err(
        store.enqueue_job(&no_attempts).await,
        Kind::Invalid,
        "enqueue_job with max_attempts 0",
    );
    expect_err(
        store.get_job(ws, JobId::new()).await,
        Kind::NotFound,
        "get_job of an unknown id",
    );
}

/// list_jobs filters by status and pages by id.
pub async fn job_list_by_status(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(job_due(store, ws, base()).await.id);
    }
    let running = claim_one_job(store, ws, base()).await;
    let queued: Vec<JobId> = all.iter().copied().filter(|id| *id != running.id).collect();
    for (status, expected) in [
        (JobStatus::Queued, queued),
        (JobStatus::Running, vec![running.id]),
        (JobStatus::Dead, vec![]),
    ] {
        let listed = ok(
            store.list_jobs(ws, Some(status), Page::first(10)).await,
            "list_jobs",
        );
        assert_eq!(
            ids(&listed, |j| j.id),
            sorted(expected),
            "list_jobs({status}) lists exactly those"
        );
    }
    assert_pagination(
        "list_jobs(None)",
        all,
        |j: &Job| j.id,
        |page| store.list_jobs(ws, None, page),
    )
    .await;
}

/// claim_jobs takes due Queued jobs of the kinds asked for, earliest run_at first (ties by
/// id), at most `limit`; each becomes Running under a lease with attempts + 1.
pub async fn job_claim_order_kinds_and_lease(store: &DynStore) {
    let ws = WorkspaceId::new();
    let kind = "conformance.work";
    let later = job_due(store, ws, at(10)).await;
    let mut tie = vec![
        job_due(store, ws, at(0)).await,
        job_due(store, ws, at(0)).await,
    ];
    tie.sort_by_key(|j| j.id);
    job_due(store, ws, at(30)).await;
    let other_kind = created(
        store.enqueue_job(&new_job(ws, "other.kind", 5)).await,
        "enqueue_job",
    );

    let claim =
        Claim::new(Scope::Workspace(ws), "worker-a", at(20), lease_ttl(), 2).with_kinds([kind]);
    let claimed = ok(store.claim_jobs(&claim).await, "claim_jobs");
    assert_eq!(
        ids(&claimed, |j| j.id),
        ids(&tie, |j| j.id),
        "claim_jobs: earliest run_at first, ties by id, at most `limit`"
    );
    for (before, after) in tie.iter().zip(&claimed) {
        assert_claimed(before, after, "worker-a", at(20));
        assert_eq!(
            &ok(store.get_job(ws, after.id).await, "get_job"),
            after,
            "the claim is stored"
        );
    }
    let next = ok(
        store
            .claim_jobs(&Claim {
                limit: 10,
                ..claim.clone()
            })
            .await,
        "claim_jobs",
    );
    assert_eq!(
        ids(&next, |j| j.id),
        vec![later.id],
        "claimed jobs are not claimed again"
    );
    assert_claimed(&later, &next[0], "worker-a", at(20));
    let any = ok(
        store.claim_jobs(&claim_at(ws, "worker-b", at(20))).await,
        "claim_jobs",
    );
    assert_eq!(
        ids(&any, |j| j.id),
        vec![other_kind.id],
        "an empty kinds list claims every kind"
    );
    let rest = ok(
        store.claim_jobs(&claim_at(ws, "worker-b", at(20))).await,
        "claim_jobs",
    );
    assert!(rest.is_empty(), "jobs not yet due are never claimed");
}

/// claim_jobs and claim_outbox reject a blank worker, a non-positive lease and a limit
/// outside 1 to 1000 with Invalid, and claim nothing.
pub async fn claims_validate_their_input(store: &DynStore) {
    let ws = WorkspaceId::new();
    let job = job_due(store, ws, base()).await;
    let message = message_due(store, ws, base()).await;
    let good = claim_at(ws, "worker", at(1));
    let bad = [
        (
            "limit 0",
            Claim {
                limit: 0,
                ..good.clone()
            },
        ),
        (
            "limit 1001",
            Claim {
                limit: 1001,
                ..good.clone()
            },
        ),
        (
            "a zero lease_ttl",
            Claim {
                lease_ttl: Duration::zero(),
                ..good.clone()
            },
        ),
        (
            "a negative lease_ttl",
            Claim {
                lease_ttl: Duration::seconds(-30),
                ..good.clone()
            },
        ),
        (
            "a blank worker",
            Claim {
                worker: "  ".into(),
                ..good.clone()
            },
        ),
    ];
    for (what, claim) in &bad {
        expect_err(
            store.claim_jobs(claim).await,
            Kind::Invalid,
            &format!("claim_jobs with {what}"),
        );
        expect_err(
            store.claim_outbox(claim).await,
            Kind::Invalid,
            &format!("claim_outbox with {what}"),
        );
    }
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get_job"),
        job,
        "invalid claims claim nothing"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "invalid claims claim nothing"
    );
}

/// Scope::All claims (restricted by kind) and reaps cover every workspace (era 2003).
pub async fn job_claim_and_reap_across_all_workspaces(store: &DynStore) {
    let now = era(2003);
    let kind = unique("conformance.all");
    let mut mine = Vec::new();
    for ws in [WorkspaceId::new(), WorkspaceId::new()] {
        let job = new_job(ws, &kind, 5).with_run_at(now);
        mine.push(created(store.enqueue_job(&job).await, "enqueue_job").id);
    }
    let claim =
        Claim::new(Scope::All, "all-worker", now, lease_ttl(), 10).with_kinds([kind.as_str()]);
    let claimed = ok(store.claim_jobs(&claim).await, "claim_jobs(Scope::All)");
    assert_eq!(
        ids(&claimed, |j| j.id),
        sorted(mine.clone()),
        "a Scope::All claim covers every workspace"
    );
    ok(
        store
            .reap_expired_jobs(Scope::All, now + Duration::minutes(10))
            .await,
        "reap(Scope::All)",
    );
    for job in &claimed {
        let got = ok(store.get_job(job.workspace_id, job.id).await, "get");
        assert_eq!(
            got.status,
            JobStatus::Queued,
            "a Scope::All reap covers every workspace"
        );
    }
    let later = Claim {
        now: now + Duration::minutes(10),
        ..claim
    };
    let again = ok(store.claim_jobs(&later).await, "claim_jobs(Scope::All)");
    assert_eq!(
        ids(&again, |j| j.id),
        sorted(mine),
        "the reaped jobs are claimable again"
    );
    for job in again {
        let lease_token = token(job.lease.as_ref());
        ok(
            store
                .complete_job(job.workspace_id, job.id, lease_token, later.now)
                .await,
            "complete_job",
        );
    }
}

/// Another workspace can neither read, list, claim, complete, retry, release, dead-letter
/// nor reap a job.
pub async fn job_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let running = running_job(store, ws, 5).await;
    let lease_token = token(running.lease.as_ref());
    let queued = job_due(store, ws, base()).await;
    expect_err(
        store.get_job(other, running.id).await,
        Kind::NotFound,
        "get_job from another workspace",
    );
    assert!(
        ok(store.list_jobs(other, None, Page::first(10)).await, "list").is_empty(),
        "list_jobs is scoped"
    );
    assert!(
        ok(
            store.claim_jobs(&claim_at(other, "intruder", at(60))).await,
            "claim"
        )
        .is_empty(),
        "claim_jobs never claims another workspace's jobs"
    );
    assert_eq!(
        ok(
            store
                .reap_expired_jobs(Scope::Workspace(other), at(600))
                .await,
            "reap"
        ),
        0,
        "reap_expired_jobs never reaps another workspace's jobs"
    );
    let unknown = store
        .complete_job(ws, JobId::new(), 1, at(1))
        .await
        .expect_err("unknown id");
    assert!(
        matches!(unknown.kind(), Kind::NotFound | Kind::LeaseLost),
        "a lease-checked call on an unknown id is NotFound or LeaseLost, got {unknown:?}"
    );
    let kind = unknown.kind();
    let rule = "a lease-checked call on another workspace's job looks like one on a missing row";
    expect_err(
        store
            .complete_job(other, running.id, lease_token, at(1))
            .await,
        kind,
        rule,
    );
    expect_err(
        store
            .retry_job(other, running.id, lease_token, at(1), "x")
            .await,
        kind,
        rule,
    );
    expect_err(
        store
            .dead_letter_job(other, running.id, lease_token, "x", at(1))
            .await,
        kind,
        rule,
    );
    expect_err(
        store
            .release_job(other, running.id, lease_token, at(1))
            .await,
        kind,
        rule,
    );
    assert_eq!(
        ok(store.get_job(ws, running.id).await, "get"),
        running,
        "the running job is untouched"
    );
    assert_eq!(
        ok(store.get_job(ws, queued.id).await, "get"),
        queued,
        "the queued job is untouched"
    );
}
