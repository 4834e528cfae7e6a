//! A panicking job handler: the worker catches the panic per job, records it as a
//! retryable failure with its reason, keeps working on other jobs, and after the
//! job's last attempt dead-letters it: it is never run again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::Duration as Span;
use serde_json::json;

use super::{clock, test_config};
use crate::store::fixtures::{base, created, ok};
use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{HandlerRegistry, JobContext, JobError, JobHandler, Worker};
use crm_core::model::{Job, JobStatus};
use crm_core::store::JobStore;

/// Panics on every run, counting runs.
#[derive(Debug, Default)]
struct Panics(AtomicU32);

#[async_trait]
impl JobHandler for Panics {
    #[allow(clippy::panic)]
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("handler bug");
    }
}

/// Succeeds, counting runs.
#[derive(Debug, Default)]
struct Works(AtomicU32);

#[async_trait]
impl JobHandler for Works {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A handler that panics: each run is a retryable failure ("job handler panicked")
/// that backs off, the job is dead after its last attempt and never runs again, and a
/// job of another kind in the same batches succeeds.
pub async fn worker_panicking_handler_is_retried_then_dead_lettered(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let (panics, works) = (Arc::new(Panics::default()), Arc::new(Works::default()));
    let registry = HandlerRegistry::new()
        .with("engine.panics", panics.clone())
        .with("engine.works", works.clone());
    let (manual, time) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let worker = Worker::new(jobs, registry, time, test_config(ws));
    let new_job = |kind: &str| {
        Job::new(ws, kind, json!({ "n": 1 }), base())
            .expect("valid job")
            .with_max_attempts(3)
    };
    let bad = created(
        store.enqueue_job(&new_job("engine.panics")).await,
        "enqueue",
    );
    let good = created(store.enqueue_job(&new_job("engine.works")).await, "enqueue");

    let stats = ok(worker.drain().await, "drain");
    assert_eq!((stats.succeeded, stats.retried), (1, 1), "{stats:?}");
    let stored = ok(store.get_job(ws, bad.id).await, "get_job");
    assert_eq!(
        stored.status,
        JobStatus::Queued,
        "retried later: {stored:?}"
    );
    assert_eq!(stored.last_error.as_deref(), Some("job handler panicked"));
    assert!(stored.run_at > base(), "with backoff");
    assert_eq!(
        ok(store.get_job(ws, good.id).await, "get_job").status,
        JobStatus::Succeeded
    );

    for _ in 0..4 {
        manual.advance(Span::days(1));
        ok(worker.drain().await, "drain");
    }
    let dead = ok(store.get_job(ws, bad.id).await, "get_job");
    assert_eq!(
        (dead.status, dead.attempts),
        (JobStatus::Dead, 3),
        "{dead:?}"
    );
    assert_eq!(dead.last_error.as_deref(), Some("job handler panicked"));
    assert_eq!(
        panics.0.load(Ordering::SeqCst),
        3,
        "one run per attempt, no more"
    );
    assert_eq!(works.0.load(Ordering::SeqCst), 1);
}
