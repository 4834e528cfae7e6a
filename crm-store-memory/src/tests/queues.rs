//! Claims, fencing, reaping, events, approvals and named leases (single-task cases).

use chrono::Duration;
use crm_core::StoreErrorKind::{Conflict, Invalid, InvalidReference, LeaseLost, NotFound};
use crm_core::ids::{ContactId, EventId, WorkspaceId};
use crm_core::model::{
    Activity, ActivityKind, ApprovalItem, ApprovalStatus, Channel, Job, JobStatus, NewEvent,
    OutboxMessage, OutboxStatus,
};
use crm_core::store::MAX_CLOCK_SKEW;
use crm_core::store::{
    ActivityFilter, ActivityStore, ApprovalStore, Claim, EventStore, JobStore, LeaseStore,
    OutboxStore, Page, QuotaKey, QuotaStore, Reschedule, Scope, SentRecord,
};

use super::{assert_kind, stored_contact, t0};
use crate::MemoryStore;
use crm_core::store::EventStoreExt;

fn message(ws: WorkspaceId, key: &str, offset_minutes: i64) -> OutboxMessage {
    OutboxMessage::new(ws, Channel::Email, "ada@example.com", "Hi", key, t0())
        .unwrap()
        .with_not_before(t0() + Duration::minutes(offset_minutes))
}

fn claim(scope: Scope, limit: u32) -> Claim {
    Claim::new(scope, "w1", t0(), Duration::minutes(5), limit)
}

fn token(m: &OutboxMessage) -> i64 {
    m.lease.as_ref().unwrap().token
}

#[tokio::test]
async fn outbox_claims_in_due_order_with_growing_tokens() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let late = store
        .enqueue_outbox(&message(ws, "late", -1))
        .await
        .unwrap()
        .value;
    let early = store
        .enqueue_outbox(&message(ws, "early", -5))
        .await
        .unwrap()
        .value;
    store
        .enqueue_outbox(&message(ws, "future", 1))
        .await
        .unwrap();
    let held = message(ws, "held", -9).with_status(OutboxStatus::AwaitingApproval);
    store.enqueue_outbox(&held).await.unwrap();
    let dup = store.enqueue_outbox(&message(ws, "late", 0)).await.unwrap();
    assert!(!dup.created);
    assert_eq!(dup.value, late);
    let stray = message(ws, "stray", 0).with_contact(ContactId::new());
    assert_kind(store.enqueue_outbox(&stray).await, InvalidReference);

    let claimed = store.claim_outbox(&claim(Scope::All, 10)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![early.id, late.id]
    );
    let first = &claimed[0];
    assert_eq!(
        (first.status, first.attempts, first.version),
        (OutboxStatus::InFlight, 1, 2)
    );
    assert_eq!(token(first), 1);

    // Rescheduling without counting gives the attempt back and keeps the token.
    let rescheduled = Reschedule {
        not_before: t0(),
        reason: Some("quota".into()),
        count_attempt: false,
    };
    assert_kind(
        store.reschedule_outbox(ws, early.id, 7, &rescheduled).await,
        LeaseLost,
    );
    let back = store
        .reschedule_outbox(ws, early.id, 1, &rescheduled)
        .await
        .unwrap();
    assert_eq!(
        (back.status, back.attempts, back.lease.clone()),
        (OutboxStatus::Pending, 0, None)
    );
    assert_eq!(back.last_error.as_deref(), Some("quota"));
    let again = store
        .claim_outbox(&claim(Scope::Workspace(ws), 1))
        .await
        .unwrap();
    assert_eq!(
        (again[0].id, token(&again[0]), again[0].attempts),
        (early.id, 2, 1)
    );
    assert_kind(
        store.reschedule_outbox(ws, early.id, 1, &rescheduled).await,
        LeaseLost,
    );
    assert_kind(
        store
            .reschedule_outbox(WorkspaceId::new(), early.id, 2, &rescheduled)
            .await,
        NotFound,
    );

    assert_kind(
        store
            .finish_outbox(ws, early.id, 2, OutboxStatus::Sent, "no", t0())
            .await,
        Invalid,
    );
    let failed = store
        .finish_outbox(ws, early.id, 2, OutboxStatus::Failed, "bad address", t0())
        .await
        .unwrap();
    assert_eq!(failed.last_error.as_deref(), Some("bad address"));
    assert_kind(
        store
            .finish_outbox(ws, early.id, 2, OutboxStatus::Failed, "again", t0())
            .await,
        LeaseLost,
    );
}

#[tokio::test]
async fn sent_and_activity_are_stored_together() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ada = stored_contact(&store, ws, "ada@example.com").await;
    let m = message(ws, "k", 0).with_contact(ada.id);
    store.enqueue_outbox(&m).await.unwrap();
    let claimed = store.claim_outbox(&claim(Scope::All, 1)).await.unwrap();
    let tok = token(&claimed[0]);
    let bad = SentRecord {
        provider_message_id: Some("p1".into()),
        sent_at: t0(),
        activity: Activity::for_contact(ws, ContactId::new(), ActivityKind::MessageSent, "s", t0())
            .unwrap(),
        enrollment: None,
    };
    assert_kind(
        store.mark_outbox_sent(ws, m.id, tok, &bad).await,
        InvalidReference,
    );
    assert_eq!(
        store.get_outbox(ws, m.id).await.unwrap().status,
        OutboxStatus::InFlight
    );
    let good = SentRecord {
        activity: Activity::for_contact(ws, ada.id, ActivityKind::MessageSent, "s", t0())
            .unwrap()
            .with_outbox_message(m.id),
        ..bad
    };
    let sent = store.mark_outbox_sent(ws, m.id, tok, &good).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(sent.provider_message_id.as_deref(), Some("p1"));
    assert_eq!(
        store
            .count_activities(ws, &ActivityFilter::default())
            .await
            .unwrap(),
        1
    );
    let mut edit = sent.clone();
    edit.status = OutboxStatus::Cancelled;
    assert_kind(store.update_outbox(&edit).await, Conflict);
}

#[tokio::test]
async fn outbox_reaping_and_updates() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let m = store
        .enqueue_outbox(&message(ws, "k", 0))
        .await
        .unwrap()
        .value;
    let claimed = store.claim_outbox(&claim(Scope::All, 1)).await.unwrap();
    let expiry = claimed[0].lease.as_ref().unwrap().expires_at;
    assert_eq!(
        store
            .reap_outbox_leases(Scope::All, expiry - Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .reap_outbox_leases(
                Scope::Workspace(WorkspaceId::new()),
                expiry + MAX_CLOCK_SKEW
            )
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .reap_outbox_leases(Scope::Workspace(ws), expiry + MAX_CLOCK_SKEW)
            .await
            .unwrap(),
        1
    );
    let reaped = store.get_outbox(ws, m.id).await.unwrap();
    assert_eq!(
        (reaped.status, reaped.lease.clone(), reaped.attempts),
        (OutboxStatus::Pending, None, 1)
    );
    let reclaimed = store.claim_outbox(&claim(Scope::All, 1)).await.unwrap();
    assert_eq!(token(&reclaimed[0]), 2, "the token survives the reap");
    let mut edit = reclaimed[0].clone();
    edit.status = OutboxStatus::Pending;
    assert_kind(store.update_outbox(&edit).await, Conflict);

    let held = message(ws, "held", 0).with_status(OutboxStatus::AwaitingApproval);
    let held = store.enqueue_outbox(&held).await.unwrap().value;
    assert!(
        store
            .claim_outbox(&claim(Scope::All, 5))
            .await
            .unwrap()
            .is_empty()
    );
    let mut approve = held.clone();
    approve.status = OutboxStatus::Pending;
    let approved = store.update_outbox(&approve).await.unwrap();
    assert_eq!(approved.version, 2);
    let mut wrong = approved.clone();
    wrong.status = OutboxStatus::InFlight;
    assert_kind(store.update_outbox(&wrong).await, Invalid);
    assert_kind(
        store.update_outbox(&approve).await,
        crm_core::StoreErrorKind::VersionConflict,
    );
    let claimed = store.claim_outbox(&claim(Scope::All, 5)).await.unwrap();
    assert_eq!(claimed.len(), 1);
}

fn job(ws: WorkspaceId, kind: &str) -> Job {
    Job::new(ws, kind, serde_json::json!({}), t0()).unwrap()
}

#[tokio::test]
async fn jobs_retry_release_and_die() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let j = store
        .enqueue_job(&job(ws, "a").with_max_attempts(2))
        .await
        .unwrap()
        .value;
    store.enqueue_job(&job(ws, "b")).await.unwrap();
    let keyed = job(ws, "a").with_idempotency_key("k");
    assert!(store.enqueue_job(&keyed).await.unwrap().created);
    assert!(
        !store
            .enqueue_job(&job(ws, "a").with_idempotency_key("k"))
            .await
            .unwrap()
            .created
    );

    let only_b = claim(Scope::All, 10).with_kinds(["b"]);
    let b = store.claim_jobs(&only_b).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kind, "b");

    let c1 = store.claim_jobs(&claim(Scope::All, 1)).await.unwrap();
    assert_eq!(c1[0].id, j.id);
    let tok = c1[0].lease.as_ref().unwrap().token;
    let released = store.release_job(ws, j.id, tok, t0()).await.unwrap();
    assert_eq!((released.status, released.attempts), (JobStatus::Queued, 0));
    assert_kind(store.complete_job(ws, j.id, tok, t0()).await, LeaseLost);

    let c2 = store.claim_jobs(&claim(Scope::All, 1)).await.unwrap();
    let tok = c2[0].lease.as_ref().unwrap().token;
    assert_eq!((tok, c2[0].attempts), (2, 1));
    let retried = store.retry_job(ws, j.id, tok, t0(), "boom").await.unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    let c3 = store.claim_jobs(&claim(Scope::All, 1)).await.unwrap();
    let tok = c3[0].lease.as_ref().unwrap().token;
    let dead = store
        .retry_job(ws, j.id, tok, t0(), "boom again")
        .await
        .unwrap();
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 2));
    assert_eq!(dead.last_error.as_deref(), Some("boom again"));
}

#[tokio::test]
async fn expired_job_leases_are_reaped() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    store
        .enqueue_job(&job(ws, "a").with_max_attempts(1))
        .await
        .unwrap();
    store.enqueue_job(&job(ws, "a")).await.unwrap();
    let claimed = store.claim_jobs(&claim(Scope::All, 2)).await.unwrap();
    let expiry = claimed[0].lease.as_ref().unwrap().expires_at;
    assert_eq!(
        store
            .reap_expired_jobs(Scope::All, expiry + MAX_CLOCK_SKEW)
            .await
            .unwrap(),
        2
    );
    let dead = store.get_job(ws, claimed[0].id).await.unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("lease expired"));
    let requeued = store.get_job(ws, claimed[1].id).await.unwrap();
    assert_eq!(
        (requeued.status, requeued.run_at),
        (JobStatus::Queued, expiry + MAX_CLOCK_SKEW)
    );
    let queued = store
        .list_jobs(ws, Some(JobStatus::Queued), Page::first(10))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}

#[tokio::test]
async fn event_positions_are_global_and_appends_idempotent() {
    let store = MemoryStore::new();
    let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
    let event = |ws, key: &str| {
        NewEvent::new(ws, "contact.created", "x", serde_json::json!({}), key, t0()).unwrap()
    };
    let e1 = store.append_event(&event(a, "k1")).await.unwrap().value;
    let e2 = store.append_event(&event(b, "k1")).await.unwrap().value;
    let e3 = store.append_event(&event(a, "k2")).await.unwrap().value;
    assert!(e1.position < e2.position && e2.position < e3.position);
    let dup = store.append_event(&event(a, "k1")).await.unwrap();
    assert!(!dup.created);
    assert_eq!(dup.value, e1);
    let mut clash = event(a, "k3");
    clash.id = e1.id;
    assert_kind(store.append_event(&clash).await, Conflict);
    let only_a = store.list_events(Scope::Workspace(a), 0, 10).await.unwrap();
    assert_eq!(
        only_a.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![e1.id, e3.id]
    );
    let after = store.list_events(Scope::All, e1.position, 1).await.unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![e2.id]);
    assert_kind(store.get_event(b, e1.id).await, NotFound);
    assert_kind(store.get_event(a, EventId::new()).await, NotFound);
}

#[tokio::test]
async fn approvals_are_one_per_message_and_expire() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let m = store
        .enqueue_outbox(&message(ws, "k", 0))
        .await
        .unwrap()
        .value;
    let item = |expires| {
        ApprovalItem::pending(ws, m.id, Channel::Email, "Hi", t0(), t0() + expires).unwrap()
    };
    let first = store
        .insert_approval(&item(Duration::hours(1)))
        .await
        .unwrap();
    assert!(first.created);
    assert!(
        !store
            .insert_approval(&item(Duration::hours(2)))
            .await
            .unwrap()
            .created
    );
    let stray = ApprovalItem::pending(
        ws,
        crm_core::ids::OutboxMessageId::new(),
        Channel::Email,
        "Hi",
        t0(),
        t0(),
    )
    .unwrap();
    assert_kind(store.insert_approval(&stray).await, InvalidReference);
    let later = t0() + Duration::hours(1);
    assert!(
        store
            .expire_approvals(Scope::All, later - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .expire_approvals(Scope::Workspace(ws), later)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].status, expired[0].version, expired[0].updated_at),
        (ApprovalStatus::Expired, 2, later)
    );
    assert!(
        store
            .expire_approvals(Scope::All, later)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn named_leases_are_exclusive_and_fenced() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ttl = Duration::minutes(1);
    let a = store
        .try_acquire_lease(ws, "runner", "a", ttl, t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.token, 1);
    assert!(
        store
            .try_acquire_lease(ws, "runner", "b", ttl, t0())
            .await
            .unwrap()
            .is_none()
    );
    let other_ws = store
        .try_acquire_lease(WorkspaceId::new(), "runner", "b", ttl, t0())
        .await
        .unwrap();
    assert!(other_ws.is_some());
    let extended = store
        .try_acquire_lease(ws, "runner", "a", ttl, t0() + Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extended.token, 1);
    let expiry = extended.expires_at;
    assert!(
        store
            .try_acquire_lease(ws, "runner", "b", ttl, expiry - Duration::seconds(1))
            .await
            .unwrap()
            .is_none()
    );
    let b = store
        .try_acquire_lease(ws, "runner", "b", ttl, expiry + MAX_CLOCK_SKEW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.token, 2);
    assert_kind(store.renew_lease(&a, ttl, expiry).await, LeaseLost);
    assert!(!store.release_lease(&a).await.unwrap());
    let renewed = store
        .renew_lease(&b, ttl, expiry + Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, expiry + Duration::seconds(10) + ttl);
    assert!(store.release_lease(&renewed).await.unwrap());
    let c = store
        .try_acquire_lease(ws, "runner", "c", ttl, expiry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token, 3);
    assert_kind(
        store.try_acquire_lease(ws, " ", "c", ttl, t0()).await,
        Invalid,
    );
    assert_kind(
        store
            .try_acquire_lease(ws, "x", "c", Duration::zero(), t0())
            .await,
        Invalid,
    );
}

#[tokio::test]
async fn quotas_stop_at_the_cap() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let key = QuotaKey::new("send:email", t0().date_naive());
    assert_kind(store.try_consume_quota(ws, &key, 5, 0).await, Invalid);
    assert!(
        store
            .try_consume_quota(ws, &key, 5, 3)
            .await
            .unwrap()
            .is_granted()
    );
    let over = store.try_consume_quota(ws, &key, 5, 3).await.unwrap();
    assert_eq!(
        over,
        crm_core::store::QuotaDecision::Exhausted { used: 3, cap: 5 }
    );
    let fill = store.try_consume_quota(ws, &key, 5, 2).await.unwrap();
    assert_eq!(
        fill,
        crm_core::store::QuotaDecision::Granted {
            used: 5,
            remaining: 0
        }
    );
    assert_eq!(store.quota_usage(ws, &key).await.unwrap(), 5);
    assert_eq!(
        store.quota_usage(WorkspaceId::new(), &key).await.unwrap(),
        0
    );
    assert!(
        !store
            .try_consume_quota(ws, &key, u32::MAX, u32::MAX)
            .await
            .unwrap()
            .is_granted()
    );
}
