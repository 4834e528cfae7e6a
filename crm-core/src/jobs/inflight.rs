//! How a worker runs what it claims: the jobs of a batch run at once, up to
//! `concurrency` handlers at a time, and their successes are completed in batches by
//! one flusher per worker.
//!
//! Two semaphores bound the work: `room` (claimed and not yet finished, at most
//! `concurrency + batch_size`) lets a claim loop claim its next batch while the last
//! one runs, and `slots` (handlers running, at most `concurrency`) is what
//! "concurrency" means. A job keeps its room until its success is handed to the
//! flusher or its failure stored, so a slow store slows the claims down rather than
//! letting unstored work pile up.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Either;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::error::StoreErrorKind;
use crate::ids::{JobId, WorkspaceId};
use crate::jobs::handler::{JobContext, JobError};
use crate::jobs::worker::{Worker, WorkerStats, add, is_shutdown};
use crate::model::{Job, JobStatus};

/// The most completions one flush writes.
const MAX_FLUSH: usize = 1000;

/// A succeeded job whose completion the flusher stores.
#[derive(Debug)]
pub(crate) struct Completion {
    workspace_id: WorkspaceId,
    id: JobId,
    token: i64,
}

/// The sending side of the flusher's queue.
pub(crate) type Completions = mpsc::Sender<Completion>;

/// A queue for completions, sized so a full room of jobs never waits to hand theirs in.
pub(crate) fn completions(worker: &Worker) -> (Completions, mpsc::Receiver<Completion>) {
    mpsc::channel(room_size(worker).max(1))
}

/// Claim loops per worker: while one claim is on its way to the store, the other's
/// batch runs, so a worker with quick handlers is not held to one claim round trip
/// per batch.
pub(crate) const CLAIMERS: usize = 2;

/// `concurrency + CLAIMERS * batch_size`: how many claimed jobs may be unfinished.
fn room_size(worker: &Worker) -> usize {
    let config = worker.config();
    config
        .concurrency
        .max(1)
        .saturating_add(CLAIMERS.saturating_mul(config.batch_size as usize))
}

/// The limits the claim loops of one worker share.
#[derive(Debug, Clone)]
pub(crate) struct Lanes {
    room: Arc<Semaphore>,
    slots: Arc<Semaphore>,
}

impl Lanes {
    /// Room for `concurrency + batch_size` unfinished jobs, `concurrency` running.
    pub(crate) fn new(worker: &Worker) -> Self {
        Self {
            room: Arc::new(Semaphore::new(room_size(worker))),
            slots: Arc::new(Semaphore::new(worker.config().concurrency.max(1))),
        }
    }
}

/// The jobs one claim loop has started and not yet collected.
#[derive(Debug)]
pub(crate) struct InFlight {
    worker: Worker,
    name: Arc<str>,
    lanes: Lanes,
    completions: Completions,
    shutdown: Option<watch::Receiver<bool>>,
    tasks: JoinSet<WorkerStats>,
    stats: WorkerStats,
}

impl InFlight {
    /// Jobs claimed as `name`, stopping at `shutdown` (never, when `None`).
    pub(crate) fn new(
        worker: Worker,
        name: &str,
        lanes: Lanes,
        completions: Completions,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            worker,
            name: Arc::from(name),
            lanes,
            completions,
            shutdown,
            tasks: JoinSet::new(),
            stats: WorkerStats::default(),
        }
    }

    /// Waits until a whole batch fits in the room; `None` when shutdown comes first.
    pub(crate) async fn room(&mut self) -> Option<OwnedSemaphorePermit> {
        let batch = self.worker.config().batch_size.max(1);
        let acquire = self.lanes.room.clone().acquire_many_owned(batch);
        match &mut self.shutdown {
            None => acquire.await.ok(),
            Some(rx) => {
                if is_shutdown(rx) {
                    return None;
                }
                unless_shutdown(rx, acquire).await.and_then(Result::ok)
            }
        }
    }

    /// Starts the claimed `jobs`, each with one unit of `room` (the rest goes back),
    /// and collects the jobs that have finished meanwhile. Returns how many started.
    pub(crate) fn start(&mut self, jobs: Vec<Job>, mut room: OwnedSemaphorePermit) -> usize {
        let started = jobs.len();
        self.stats.claimed += started as u64;
        for job in jobs {
            let task = run_claimed(
                self.worker.clone(),
                self.name.clone(),
                job,
                room.split(1),
                self.lanes.slots.clone(),
                self.shutdown.clone(),
                self.completions.clone(),
            );
            self.tasks.spawn(task);
        }
        drop(room);
        while let Some(done) = self.tasks.try_join_next() {
            self.collect(done);
        }
        started
    }

    /// Waits for every started job; returns what they did (successes are counted by
    /// the flusher, once stored).
    pub(crate) async fn finish(mut self) -> WorkerStats {
        while let Some(done) = self.tasks.join_next().await {
            self.collect(done);
        }
        self.stats
    }

    fn collect(&mut self, done: Result<WorkerStats, tokio::task::JoinError>) {
        match done {
            Ok(stats) => self.stats += stats,
            Err(err) => {
                tracing::error!(worker = %self.name, error = %err, "a job task ended abnormally");
                self.stats.lost += 1;
            }
        }
    }
}

/// `work`'s output, or `None` when shutdown is asked for (or its sender dropped) first.
async fn unless_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let stop = shutdown.wait_for(|stop| *stop);
    futures::pin_mut!(work, stop);
    match futures::future::select(work, stop).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Runs one claimed job once a slot is free; releases it unstarted if shutdown comes
/// first.
async fn run_claimed(
    worker: Worker,
    name: Arc<str>,
    job: Job,
    room: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    shutdown: Option<watch::Receiver<bool>>,
    completions: Completions,
) -> WorkerStats {
    let _room = room;
    let mut stats = WorkerStats::default();
    let Some(token) = job.lease.as_ref().map(|l| l.token) else {
        tracing::error!(job_id = %job.id, "claimed job carries no lease; skipped");
        stats.lost += 1;
        return stats;
    };
    let slot = match shutdown {
        None => slots.acquire_owned().await.ok(),
        Some(mut rx) if !is_shutdown(&rx) => {
            let slot = unless_shutdown(&mut rx, slots.acquire_owned()).await;
            slot.and_then(Result::ok).filter(|_| !is_shutdown(&rx))
        }
        Some(_) => None,
    };
    let Some(_slot) = slot else {
        release(&worker, &job, token, &mut stats).await;
        return stats;
    };
    // One span per job, ids only: a handler's own logs and spans nest in it.
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.kind,
        workspace_id = %job.workspace_id,
        attempt = job.attempts,
        worker = %name,
    );
    run_job(&worker, &name, &job, token, &completions, &mut stats)
        .instrument(span)
        .await;
    stats
}

/// Gives an unstarted job back (graceful shutdown).
async fn release(worker: &Worker, job: &Job, token: i64, stats: &mut WorkerStats) {
    let inner = &worker.inner;
    let released = inner
        .store
        .release_job(job.workspace_id, job.id, token, inner.clock.now())
        .await;
    match released {
        Ok(_) => stats.released += 1,
        Err(err) => {
            tracing::warn!(job_id = %job.id, error = %err, "releasing a job failed");
            stats.lost += 1;
        }
    }
}

/// Runs the handler; hands a success to the flusher and stores a failure at once.
async fn run_job(
    worker: &Worker,
    name: &str,
    job: &Job,
    token: i64,
    completions: &Completions,
    stats: &mut WorkerStats,
) {
    let inner = &worker.inner;
    let (ws, id) = (job.workspace_id, job.id);
    let outcome = match inner.registry.get(&job.kind) {
        None => Err(JobError::permanent(format!(
            "no handler registered for job kind {:?}",
            job.kind
        ))),
        Some(handler) => {
            let ctx = JobContext::new(name, inner.clock.now(), token);
            AssertUnwindSafe(handler.handle(job, &ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(JobError::retryable("job handler panicked")))
        }
    };
    let now = inner.clock.now();
    let stored = match outcome {
        Ok(()) => {
            let done = Completion {
                workspace_id: ws,
                id,
                token,
            };
            match completions.send(done).await {
                Ok(()) => return,
                // The flusher is gone (it never is before the loops end): store it here.
                Err(_) => inner.store.complete_job(ws, id, token, now).await,
            }
        }
        Err(JobError::Permanent { reason }) => {
            inner
                .store
                .dead_letter_job(ws, id, token, &reason, now)
                .await
        }
        Err(JobError::Retryable {
            reason,
            retry_after,
        }) => {
            let delay = retry_after.unwrap_or_else(|| inner.config.backoff.delay(job.attempts));
            let retry_at = add(now, delay);
            inner
                .store
                .retry_job(ws, id, token, retry_at, &reason)
                .await
        }
    };
    match stored {
        Ok(job) => match job.status {
            JobStatus::Succeeded => stats.succeeded += 1,
            JobStatus::Dead => {
                tracing::warn!(job_id = %id, kind = %job.kind, "job dead-lettered");
                stats.dead += 1;
            }
            JobStatus::Queued | JobStatus::Running => stats.retried += 1,
        },
        Err(err) if err.kind() == StoreErrorKind::LeaseLost => {
            tracing::warn!(job_id = %id, "job lease lost before its outcome was stored");
            stats.lost += 1;
        }
        Err(err) => {
            tracing::warn!(job_id = %id, error = %err, "storing a job outcome failed");
            stats.lost += 1;
        }
    }
}

/// Stores completions until every sender is gone: each write takes whatever has
/// arrived (up to [`MAX_FLUSH`]), so a completion waits at most for the write before
/// it, never for a timer or a fuller buffer.
pub(crate) async fn flush_completions(
    worker: Worker,
    mut queue: mpsc::Receiver<Completion>,
) -> WorkerStats {
    let inner = &worker.inner;
    let mut stats = WorkerStats::default();
    let mut batch = Vec::with_capacity(MAX_FLUSH.min(room_size(&worker)));
    while queue.recv_many(&mut batch, MAX_FLUSH).await > 0 {
        let entries: Vec<(WorkspaceId, JobId, i64)> = batch
            .drain(..)
            .map(|c| (c.workspace_id, c.id, c.token))
            .collect();
        let answers = inner.store.complete_jobs(&entries, inner.clock.now()).await;
        match answers {
            Ok(answers) => {
                let unanswered = entries.len().saturating_sub(answers.len());
                for ((_, id, _), answer) in entries.iter().zip(answers) {
                    match answer {
                        Ok(()) => stats.succeeded += 1,
                        Err(err) if err.kind() == StoreErrorKind::LeaseLost => {
                            tracing::warn!(job_id = %id, "job lease lost before its outcome was stored");
                            stats.lost += 1;
                        }
                        Err(err) => {
                            tracing::warn!(job_id = %id, error = %err, "storing a job outcome failed");
                            stats.lost += 1;
                        }
                    }
                }
                if unanswered > 0 {
                    tracing::error!(
                        unanswered,
                        "the store answered fewer completions than asked"
                    );
                    stats.lost += unanswered as u64;
                }
            }
            Err(err) => {
                tracing::warn!(jobs = entries.len(), error = %err, "storing job completions failed");
                stats.lost += entries.len() as u64;
            }
        }
    }
    stats
}
