//! Races: many callers at once against the atomic operations of the contract.
//!
//! Each case starts its callers with [`race`], which runs them on several OS threads
//! (and interleaves them at every `.await`), then checks the outcome a serial order
//! would give: no double claim, no overdraw, one winner.

use std::collections::BTreeSet;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{IntakeStatus, JobStatus, OutboxStatus};
use crm_core::store::EventStoreExt;
use crm_core::store::{EnrollmentFilter, Page, QuotaDecision, QuotaKey};

use super::fixtures::{
    base, claim_at, contact, fingerprint, job_due, message_due, new_anomaly, new_enrollment,
    new_event, new_intake, new_job, new_message, ok, race, sequence, unique,
};
use chrono::Duration;
use futures::future::join_all;

/// How many callers race in each case.
const RACERS: usize = 16;

/// Asserts `claimed` holds every id of `expected` exactly once.
#[track_caller]
fn assert_claimed_once<I: Ord + Copy + std::fmt::Debug>(
    claimed: Vec<Vec<I>>,
    expected: &BTreeSet<I>,
    what: &str,
) {
    let all: Vec<I> = claimed.into_iter().flatten().collect();
    let distinct: BTreeSet<I> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "{what}: concurrent claimers MUST never receive the same row"
    );
    assert_eq!(
        &distinct, expected,
        "{what}: together the claimers claim every due row"
    );
}

/// 16 workers claiming 200 jobs in batches never share a job and claim them all.
pub async fn concurrent_job_claims_never_overlap(store: &DynStore) {
    let ws = WorkspaceId::new();
    let jobs = join_all((0..200).map(|_| job_due(store, ws, base()))).await;
    let expected: BTreeSet<_> = jobs.iter().map(|j| j.id).collect();
    let claimed = race(RACERS, |i| async move {
        let mut mine = Vec::new();
        let mut claim = claim_at(ws, &format!("worker-{i}"), base());
        claim.limit = 5;
        loop {
            let batch = ok(store.claim_jobs(&claim).await, "claim_jobs");
            if batch.is_empty() {
                break mine;
            }
            for job in batch {
                assert_eq!(job.status, JobStatus::Running, "claimed jobs are Running");
                assert_eq!(job.attempts, 1, "each job was claimed once");
                mine.push(job.id);
            }
        }
    })
    .await;
    assert_claimed_once(claimed, &expected, "claim_jobs");
}

/// 16 dispatchers claiming 200 messages in batches never share one and claim them all.
pub async fn concurrent_outbox_claims_never_overlap(store: &DynStore) {
    let ws = WorkspaceId::new();
    let messages = join_all((0..200).map(|_| message_due(store, ws, base()))).await;
    let expected: BTreeSet<_> = messages.iter().map(|m| m.id).collect();
    let claimed = race(RACERS, |i| async move {
        let mut mine = Vec::new();
        let mut claim = claim_at(ws, &format!("dispatcher-{i}"), base());
        claim.limit = 5;
        loop {
            let batch = ok(store.claim_outbox(&claim).await, "claim_outbox");
            if batch.is_empty() {
                break mine;
            }
            for message in batch {
                assert_eq!(
                    message.status,
                    OutboxStatus::InFlight,
                    "claimed messages are InFlight"
                );
                assert_eq!(message.attempts, 1, "each message was claimed once");
                mine.push(message.id);
            }
        }
    })
    .await;
    assert_claimed_once(claimed, &expected, "claim_outbox");
}

/// 32 callers consuming 1 unit of a cap of 10: exactly 10 are granted.
pub async fn concurrent_quota_never_overdraws(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = QuotaKey::new(unique("send"), base().date_naive());
    let key = &key;
    let decisions = race(2 * RACERS, |_| async move {
        ok(
            store.try_consume_quota(ws, key, 10, 1).await,
            "try_consume_quota",
        )
    })
    .await;
    let used: BTreeSet<u32> = decisions
        .iter()
        .filter_map(|d| match d {
            QuotaDecision::Granted { used, .. } => Some(*used),
            QuotaDecision::Exhausted { .. } => None,
        })
        .collect();
    let granted = decisions.iter().filter(|d| d.is_granted()).count();
    assert_eq!(
        granted, 10,
        "exactly `cap` racing consumers are granted, never more"
    );
    assert_eq!(
        used,
        (1..=10).collect(),
        "each grant saw a distinct running total"
    );
    assert_eq!(
        ok(store.quota_usage(ws, key).await, "quota_usage"),
        10,
        "the total stops at the cap"
    );
}

/// Of 16 holders racing for one free lease exactly one wins.
pub async fn concurrent_lease_acquire_single_winner(store: &DynStore) {
    let ws = WorkspaceId::new();
    let name = unique("runner");
    let name = name.as_str();
    let grants = race(RACERS, |i| async move {
        let holder = format!("holder-{i}");
        ok(
            store
                .try_acquire_lease(ws, name, &holder, Duration::minutes(1), base())
                .await,
            "try_acquire_lease",
        )
    })
    .await;
    let winners: Vec<_> = grants.into_iter().flatten().collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing acquirer holds the lease"
    );
}

/// Of 16 appends with one idempotency key exactly one creates; all return that event.
pub async fn concurrent_event_append_creates_once(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("event");
    let key = key.as_str();
    let results = race(RACERS, |_| async move {
        ok(
            store.append_event(&new_event(ws, key)).await,
            "append_event",
        )
    })
    .await;
    assert_eq!(
        results.iter().filter(|r| r.created).count(),
        1,
        "exactly one racing append creates the event"
    );
    let winner = results.iter().find(|r| r.created).map(|r| r.value.clone());
    assert!(
        results.iter().all(|r| Some(&r.value) == winner.as_ref()),
        "every racing append returns the one stored event"
    );
    let listed = ok(
        store
            .list_events(crm_core::store::Scope::Workspace(ws), 0, 100)
            .await,
        "list_events",
    );
    assert_eq!(listed.len(), 1, "one event is stored");
}

/// Of 16 intake rows with one fingerprint exactly one stays Pending; the rest are its duplicates.
pub async fn concurrent_intake_keeps_one_pending(store: &DynStore) {
    let ws = WorkspaceId::new();
    let print = fingerprint(&unique("ada"));
    let print = &print;
    let rows = race(RACERS, |_| async move {
        ok(
            store
                .insert_intake(&new_intake(ws, Some(print.clone())))
                .await,
            "insert_intake",
        )
    })
    .await;
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| r.status == IntakeStatus::Pending)
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "exactly one racing row with the fingerprint stays Pending"
    );
    let first = pending[0].id;
    for row in &rows {
        if row.id != first {
            assert_eq!(
                (row.status, row.duplicate_of),
                (IntakeStatus::Duplicate, Some(first)),
                "every other racing row is a Duplicate of the Pending one"
            );
        }
    }
    let stored = ok(
        store.list_intake(ws, None, Page::first(100)).await,
        "list_intake",
    );
    assert_eq!(stored.len(), RACERS, "no racing row is dropped");
}

/// Of 16 enrollments of one contact in one sequence exactly one succeeds; the rest are Conflict.
pub async fn concurrent_enrollment_single_running(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let ada = contact(store, ws).await;
    let (seq, ada) = (&seq, &ada);
    let results = race(RACERS, |_| async move {
        store.insert_enrollment(&new_enrollment(seq, ada.id)).await
    })
    .await;
    let ok_count = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok_count, 1, "exactly one racing enrollment succeeds");
    for result in &results {
        if let Err(err) = result {
            assert_eq!(
                err.kind(),
                Kind::Conflict,
                "the losers get Conflict, got {err:?}"
            );
        }
    }
    let filter = EnrollmentFilter {
        contact_id: Some(ada.id),
        sequence_id: Some(seq.id),
        running_only: true,
    };
    let running = ok(
        store.list_enrollments(ws, &filter, Page::first(100)).await,
        "list_enrollments",
    );
    assert_eq!(running.len(), 1, "one running enrollment is stored");
}

/// Of 16 compare-and-set updates from one version exactly one wins; the rest are VersionConflict.
pub async fn concurrent_updates_one_version_wins(store: &DynStore) {
    let ws = WorkspaceId::new();
    let original = contact(store, ws).await;
    let original = &original;
    let results = race(RACERS, |i| async move {
        let mut change = original.clone();
        change.title = Some(format!("title {i}"));
        store.update_contact(&change).await
    })
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing update of version 1 succeeds"
    );
    for result in &results {
        if let Err(err) = result {
            assert_eq!(
                err.kind(),
                Kind::VersionConflict,
                "the losers get VersionConflict, got {err:?}"
            );
        }
    }
    let stored = ok(store.get_contact(ws, original.id).await, "get_contact");
    assert_eq!(
        &stored, winners[0],
        "the stored row is the winner's, at version 2"
    );
}

/// Racing enqueues with one key create exactly one outbox message and one job.
pub async fn concurrent_idempotent_enqueues_create_once(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("key");
    let key = key.as_str();
    let messages = race(RACERS, |_| async move {
        let mut message = new_message(ws);
        message.idempotency_key = key.to_owned();
        ok(store.enqueue_outbox(&message).await, "enqueue_outbox")
    })
    .await;
    assert_eq!(
        messages.iter().filter(|m| m.created).count(),
        1,
        "exactly one racing enqueue_outbox creates"
    );
    let ids: BTreeSet<_> = messages.iter().map(|m| m.value.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every racing enqueue_outbox returns the one stored message"
    );
    let jobs = race(RACERS, |_| async move {
        let job = new_job(ws, "conformance.race", 3).with_idempotency_key(key);
        ok(store.enqueue_job(&job).await, "enqueue_job")
    })
    .await;
    assert_eq!(
        jobs.iter().filter(|j| j.created).count(),
        1,
        "exactly one racing enqueue_job creates"
    );
    let ids: BTreeSet<_> = jobs.iter().map(|j| j.value.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every racing enqueue_job returns the one stored job"
    );
}

/// Racing raises of one dedup key create exactly one open anomaly.
pub async fn concurrent_anomaly_raise_creates_once(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("failure_rate");
    let key = key.as_str();
    let raised = race(RACERS, |_| async move {
        ok(
            store.raise_anomaly(&new_anomaly(ws, key)).await,
            "raise_anomaly",
        )
    })
    .await;
    assert_eq!(
        raised.iter().filter(|a| a.created).count(),
        1,
        "exactly one racing raise creates"
    );
    let open = ok(
        store.list_anomalies(ws, true, Page::first(100)).await,
        "list_anomalies",
    );
    assert_eq!(open.len(), 1, "one open anomaly is stored");
}
