//! Starting the loops ([`Engine::start`]), stopping them ([`RunningEngine::shutdown`]),
//! and the single pass hosts drive by hand ([`Engine::run_due`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::jobs::WorkerStats;
use crate::outreach::dispatch::{DispatchError, DispatchReport};
use crate::outreach::runner::{RunnerError, TickReport};

use super::loops::{self, Tally};
use super::{Engine, Inner};

/// Why [`Engine::start`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was called outside a Tokio runtime.
    #[error("the engine must be started inside a Tokio runtime")]
    NoRuntime,
    /// This engine (or a clone of it) is already running; shut it down first.
    #[error("the engine is already running")]
    AlreadyRunning,
}

/// Why one [`Engine::run_due`] pass stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// Enqueuing periodic jobs failed.
    #[error("scheduling periodic jobs failed")]
    Scheduler(#[source] StoreError),
    /// Routing events failed.
    #[error("routing events failed")]
    Events(#[source] StoreError),
    /// The runner could not list workspaces.
    #[error("the sequence runner failed")]
    Runner(#[source] RunnerError),
    /// The dispatcher could not claim.
    #[error("dispatching the outbox failed")]
    Dispatch(#[source] DispatchError),
    /// The worker could not claim.
    #[error("running jobs failed")]
    Jobs(#[source] StoreError),
}

/// What one [`Engine::run_due`] pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct StepReport {
    /// Periodic jobs enqueued.
    pub periodic_enqueued: usize,
    /// Events routed to their jobs.
    pub events_routed: u64,
    /// The runner's tick.
    pub runner: TickReport,
    /// The dispatch batches, summed.
    pub dispatched: DispatchReport,
    /// The jobs run.
    pub jobs: WorkerStats,
}

/// What a running engine did, returned by [`RunningEngine::shutdown`].
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Runner ticks.
    pub runner_ticks: u64,
    /// Messages the runner queued.
    pub messages_enqueued: u64,
    /// What the dispatch batches did, summed.
    pub dispatched: DispatchReport,
    /// What the job worker did.
    pub jobs: WorkerStats,
    /// Periodic jobs the scheduler enqueued.
    pub periodic_enqueued: u64,
    /// Events routed to their jobs.
    pub events_routed: u64,
    /// Loop iterations that failed (logged; the loop backed off and went on).
    pub errors: u64,
    /// Loop iterations that panicked (logged; the loop went on).
    pub panics: u64,
    /// Loops still busy at the deadline, aborted: their in-flight work (a send, a
    /// job, a runner pass) was dropped and its leases expire on their own.
    pub abandoned: Vec<&'static str>,
}

impl ShutdownReport {
    /// Whether every loop stopped within the deadline.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.abandoned.is_empty()
    }

    fn add(&mut self, tally: Tally) {
        self.errors += tally.errors;
        self.panics += tally.panics;
        self.messages_enqueued += tally.enqueued;
        self.dispatched.merge(&tally.dispatched);
        self.jobs += tally.jobs;
        self.periodic_enqueued += tally.periodic;
        self.events_routed += tally.routed;
    }
}

/// The loops of a started [`Engine`]. Dropping it asks the loops to stop without
/// waiting for them; [`shutdown`](Self::shutdown) waits and reports.
#[derive(Debug)]
pub struct RunningEngine {
    engine: Engine,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Tally>)>,
}

impl Engine {
    /// Spawns the runner, dispatcher, job worker, scheduler and event router loops on
    /// the current Tokio runtime (see the [module docs](super)).
    ///
    /// # Errors
    /// [`StartError::NoRuntime`] outside a Tokio runtime; [`StartError::AlreadyRunning`]
    /// while an earlier [`RunningEngine`] of this engine is alive.
    pub fn start(&self) -> Result<RunningEngine, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        if self
            .inner
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(StartError::AlreadyRunning);
        }
        let (stop, rx) = watch::channel(false);
        let inner = &self.inner;
        let spawn = |task| runtime.spawn(task);
        let worker = inner.worker.clone();
        let worker_rx = rx.clone();
        let tasks = vec![
            (
                "runner",
                spawn(loops::runner(inner.clone(), rx.clone()).boxed_tally()),
            ),
            (
                "dispatcher",
                spawn(loops::dispatcher(inner.clone(), rx.clone()).boxed_tally()),
            ),
            (
                "worker",
                spawn(
                    async move {
                        Tally {
                            jobs: worker.run(worker_rx).await,
                            ..Tally::default()
                        }
                    }
                    .boxed_tally(),
                ),
            ),
            (
                "scheduler",
                spawn(loops::scheduler(inner.clone(), rx.clone()).boxed_tally()),
            ),
            (
                "events",
                spawn(loops::events(inner.clone(), rx).boxed_tally()),
            ),
        ];
        tracing::info!(engine = %inner.config.name, "engine started");
        Ok(RunningEngine {
            engine: self.clone(),
            stop,
            tasks,
        })
    }

    /// One pass of every loop at the clock's now, in order: expired outbox and job
    /// leases returned, the scheduler's tick, the event router, one runner tick,
    /// dispatch batches until one claims less than a full batch, then the job worker
    /// until no job is due. For hosts and tests that
    /// move a [`ManualClock`](crate::ManualClock) themselves; it must not run while
    /// the engine is [started](Self::start) (the loops would race it).
    ///
    /// # Errors
    /// The first part that failed as a whole (a claim, a listing); failures of single
    /// messages, enrollments or jobs are in the parts' reports instead.
    pub async fn run_due(&self) -> Result<StepReport, StepError> {
        let inner = &self.inner;
        inner
            .dispatcher
            .reap_expired_leases()
            .await
            .map_err(StepError::Dispatch)?;
        inner.worker.reap_once().await.map_err(StepError::Jobs)?;
        let mut report = StepReport {
            periodic_enqueued: inner
                .scheduler
                .tick()
                .await
                .map_err(StepError::Scheduler)?
                .enqueued
                .len(),
            events_routed: loops::route_events(inner)
                .await
                .map_err(StepError::Events)?
                .routed,
            runner: inner.runner.tick().await.map_err(StepError::Runner)?,
            ..StepReport::default()
        };
        let full = u64::from(inner.dispatcher.config().batch_size());
        // A bound on batches, so messages retried "now" by a misconfigured backoff
        // cannot keep one pass going for ever.
        for _ in 0..100 {
            let batch = inner
                .dispatcher
                .dispatch_batch()
                .await
                .map_err(StepError::Dispatch)?;
            report.dispatched.merge(&batch);
            if batch.claimed < full {
                break;
            }
        }
        report.jobs = inner.worker.drain().await.map_err(StepError::Jobs)?;
        Ok(report)
    }
}

/// Spawned loop futures, boxed so the task list has one type.
trait BoxedTally {
    fn boxed_tally(self) -> futures::future::BoxFuture<'static, Tally>;
}

impl<F> BoxedTally for F
where
    F: std::future::Future<Output = Tally> + Send + 'static,
{
    fn boxed_tally(self) -> futures::future::BoxFuture<'static, Tally> {
        Box::pin(self)
    }
}

impl RunningEngine {
    /// The engine whose loops these are.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The loops whose task has ended although shutdown was not asked for (empty while
    /// every loop runs): a host's health check reports them. A loop survives errors
    /// and panics of single iterations, so an ended loop means its task was lost.
    #[must_use]
    pub fn stopped_loops(&self) -> Vec<&'static str> {
        self.tasks
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Stops the loops: none claims anything more; in-flight work (a send, a job, a
    /// runner pass) finishes and its outcome is stored; claimed jobs not yet started
    /// are given back; runner leases are released at the end of their pass. Loops
    /// still busy at [`EngineConfig::shutdown_deadline`](super::EngineConfig) are
    /// aborted and named in [`ShutdownReport::abandoned`].
    pub async fn shutdown(mut self) -> ShutdownReport {
        let inner: Arc<Inner> = self.engine.inner.clone();
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + inner.config.shutdown_deadline;
        let mut report = ShutdownReport::default();
        for (name, mut task) in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(tally)) => {
                    if name == "runner" {
                        report.runner_ticks = tally.iterations;
                    }
                    report.add(tally);
                }
                Ok(Err(join)) => {
                    tracing::error!(loop_name = name, error = %join, "engine loop ended abnormally");
                    report.panics += 1;
                }
                Err(_) => {
                    tracing::warn!(
                        loop_name = name,
                        "engine loop missed the shutdown deadline; aborted"
                    );
                    task.abort();
                    report.abandoned.push(name);
                }
            }
        }
        tracing::info!(
            engine = %inner.config.name,
            abandoned = report.abandoned.len(),
            "engine stopped"
        );
        report
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.engine.inner.running.store(false, Ordering::Release);
    }
}
