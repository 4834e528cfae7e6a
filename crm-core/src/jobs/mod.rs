//! Durable background work: handlers, the worker, the event bus and periodic jobs.
//!
//! - [`JobHandler`]s do the work of one job kind and answer `Ok`, a
//!   [`JobError::Retryable`] or a [`JobError::Permanent`]; a [`HandlerRegistry`] maps
//!   kinds to handlers.
//! - A [`Worker`] claims batches over the registry (claiming only registered kinds),
//!   runs up to `concurrency` jobs at once, completes successes in batches, retries
//!   with exponential [`Backoff`] and full jitter, dead-letters with the reason, reaps
//!   expired leases, and shuts down gracefully: in-flight jobs finish,
//!   claimed-but-unstarted jobs are released with their attempt given back.
//! - The [`EventBus`] appends an event and enqueues the jobs its kind is routed to
//!   ([`EventRoutes`]) in one atomic store call; job keys are `"{event_id}:{job_kind}"`
//!   and a republished event enqueues nothing.
//! - The [`EventRouter`] routes the events stores append with their own state changes
//!   (unrouted, since a store knows no routes): it lists them, builds their jobs with
//!   the same [`EventRoutes`] ([`EventRoutes::jobs_for`]) and enqueues them while
//!   marking the events routed, one atomic store call per workspace.
//! - The [`Scheduler`] enqueues [`PeriodicJob`]s on cron schedules with keys
//!   `"{kind}@{instant}"`, so concurrent schedulers enqueue each run once. Built-in
//!   kinds: [`EXPIRE_APPROVALS`] ([`ExpireApprovalsHandler`]) and [`ANOMALY_SCAN`]
//!   ([`AnomalyScanHandler`](crate::anomaly::AnomalyScanHandler)). There is no quota
//!   rollover job: quota keys name their period ([`QuotaKey`](crate::store::QuotaKey)),
//!   so a new day simply uses a new counter and nothing needs resetting.
//!
//! Periodic jobs that span tenants live in [`SYSTEM_WORKSPACE`]. The anomaly scan takes
//! the workspaces to scan in its payload (the store has no "list workspaces" method):
//! the host schedules one scan with the list, or one per workspace.
//!
//! ```ignore
//! let registry = HandlerRegistry::new()
//!     .with(ANOMALY_SCAN, Arc::new(AnomalyScanHandler::new(scanner)))
//!     .with(EXPIRE_APPROVALS, Arc::new(ExpireApprovalsHandler::new(inbox)));
//! let worker = Worker::new(store.clone(), registry, clock.clone(), WorkerConfig::default());
//! let (stop, shutdown) = tokio::sync::watch::channel(false);
//! let running = tokio::spawn(async move { worker.run(shutdown).await });
//! // ... later
//! stop.send(true)?;
//! let stats = running.await?;
//! ```

mod backoff;
mod events;
mod handler;
mod inflight;
mod router;
mod schedule;
mod worker;

pub use backoff::{Backoff, Jitter};
pub use events::{EventBus, EventRoutes, Projection, event_payload, job_key};
pub use handler::{HandlerRegistry, JobContext, JobError, JobHandler};
pub use router::{EventRouter, RouteReport};
pub use schedule::{
    ANOMALY_SCAN, EXPIRE_APPROVALS, MAX_INSTANTS_PER_TICK, PeriodicJob, SYSTEM_WORKSPACE,
    Scheduler, TickReport,
};

/// The handler of [`EXPIRE_APPROVALS`]; it lives with the approval code and is
/// re-exported here beside the other built-in periodic job kinds.
pub use crate::outreach::approvals::ExpireApprovalsHandler;
pub use worker::{Worker, WorkerConfig, WorkerStats};
