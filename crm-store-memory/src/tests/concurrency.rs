//! Races: 16 tasks on a multi-thread runtime against one store.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Channel, Enrollment, Fingerprint, IntakeRecord, IntakeSource, IntakeStatus, Job, OutboxMessage,
};
use crm_core::store::{Claim, Page, QuotaKey, Scope};
use tokio::task::JoinSet;

use super::{stored_contact, t0};
use crate::MemoryStore;

const TASKS: usize = 16;

fn store() -> Arc<DynStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_job_claims_never_overlap() {
    let store = store();
    let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
    for i in 0..200 {
        let ws = if i % 2 == 0 { a } else { b };
        let job = Job::new(ws, "work", serde_json::json!({ "i": i }), t0()).unwrap();
        store.enqueue_job(&job).await.unwrap();
    }
    let mut tasks = JoinSet::new();
    for worker in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = Claim::new(
                    Scope::All,
                    format!("w{worker}"),
                    t0(),
                    Duration::minutes(1),
                    3,
                );
                let batch = store.claim_jobs(&claim).await.unwrap();
                if batch.is_empty() {
                    break mine;
                }
                for job in batch {
                    let token = job.lease.as_ref().unwrap().token;
                    store
                        .complete_job(job.workspace_id, job.id, token, t0())
                        .await
                        .unwrap();
                    mine.push(job.id);
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(claimed) = tasks.join_next().await {
        for id in claimed.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_outbox_claims_never_overlap() {
    let store = store();
    let ws = WorkspaceId::new();
    for i in 0..100 {
        let m = OutboxMessage::new(
            ws,
            Channel::Email,
            "a@example.com",
            "Hi",
            format!("k{i}"),
            t0(),
        )
        .unwrap();
        store.enqueue_outbox(&m).await.unwrap();
    }
    let mut tasks = JoinSet::new();
    for worker in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let claim = Claim::new(
                Scope::Workspace(ws),
                format!("w{worker}"),
                t0(),
                Duration::minutes(1),
                7,
            );
            store.claim_outbox(&claim).await.unwrap()
        });
    }
    let mut seen = HashSet::new();
    while let Some(claimed) = tasks.join_next().await {
        for m in claimed.unwrap() {
            assert_eq!(m.lease.as_ref().map(|l| l.token), Some(1));
            assert!(seen.insert(m.id), "message {} was claimed twice", m.id);
        }
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_quota_consumers_never_overdraw() {
    let store = store();
    let ws = WorkspaceId::new();
    let key = QuotaKey::new("send:email", t0().date_naive());
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.spawn(async move {
            let mut granted = 0u32;
            for _ in 0..20 {
                if store
                    .try_consume_quota(ws, &key, 50, 1)
                    .await
                    .unwrap()
                    .is_granted()
                {
                    granted += 1;
                }
                tokio::task::yield_now().await;
            }
            granted
        });
    }
    let mut total = 0;
    while let Some(granted) = tasks.join_next().await {
        total += granted.unwrap();
    }
    assert_eq!(total, 50);
    assert_eq!(store.quota_usage(ws, &key).await.unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_lease_takers_get_one_holder() {
    let store = store();
    let ws = WorkspaceId::new();
    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .try_acquire_lease(ws, "runner", &format!("h{i}"), Duration::minutes(1), t0())
                .await
                .unwrap()
        });
    }
    let mut winners = Vec::new();
    while let Some(grant) = tasks.join_next().await {
        winners.extend(grant.unwrap());
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(winners[0].token, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_intake_and_enrollment_inserts_keep_one_winner() {
    let store = Arc::new(MemoryStore::new());
    let ws = WorkspaceId::new();
    let fp = Fingerprint::compute(Some("ada@example.com"), None, None);
    let contact = stored_contact(&store, ws, "ada@example.com").await;
    let seq = crm_core::store::SequenceStore::insert_sequence(store.as_ref(), &super::sequence(ws))
        .await
        .unwrap();
    let dyn_store: Arc<DynStore> = store;
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, fp) = (Arc::clone(&dyn_store), fp.clone());
        tasks.spawn(async move {
            let row = IntakeRecord::new(
                ws,
                IntakeSource::Form,
                "f",
                serde_json::json!({}),
                Some(fp),
                t0(),
            )
            .unwrap();
            let stored = store.insert_intake(&row).await.unwrap();
            let enrolled = store
                .insert_enrollment(&Enrollment::new(ws, seq.id, 1, contact.id, t0()))
                .await;
            (stored.status, enrolled.is_ok())
        });
    }
    let (mut pending, mut enrolled) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (status, ok) = result.unwrap();
        pending += usize::from(status == IntakeStatus::Pending);
        enrolled += usize::from(ok);
    }
    assert_eq!((pending, enrolled), (1, 1));
    let dups = dyn_store
        .list_intake(ws, Some(IntakeStatus::Duplicate), Page::first(100))
        .await
        .unwrap();
    assert_eq!(dups.len(), TASKS - 1);
}
