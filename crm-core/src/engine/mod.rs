//! The `Engine`: every part wired into one system, with the handles a host uses and
//! one call to run the background loops.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<crm_core::DynStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use crm_core::engine::{Engine, EngineConfig};
//!
//! let engine = Engine::builder(store)
//!     .config(EngineConfig::default().with_name("api-1"))
//!     .build()?;
//! // Handles: engine.sequences(), engine.enroller(), engine.inbox(), engine.inbound(),
//! // engine.inbound_pipeline(), engine.intake(), engine.enricher(), engine.scorer(), engine.forecast(),
//! // engine.anomalies().
//! let running = engine.start()?; // runner, dispatcher, job worker, scheduler, events
//! // ... serve requests ...
//! let report = running.shutdown().await; // drains within the configured deadline
//! assert!(report.is_clean());
//! # Ok(())
//! # }
//! ```
//!
//! [`Engine::start`] spawns on the current Tokio runtime:
//! - the **sequence runner** loop: a tick over every workspace with due enrollments;
//! - the **dispatcher** loop: outbox batches, and expired outbox leases reaped;
//! - the **job worker**, with every built-in handler ([`BUILT_IN_JOBS`]) and the host's;
//! - the **scheduler** of the built-in periodic jobs (approval expiry, the anomaly scan
//!   of every workspace of the store's registry, nightly score decay, the purge of old
//!   webhook deliveries) and the host's;
//! - the **event router**: stores append an event with every state change, unrouted;
//!   the router turns each into the jobs of the engine's routes (rescoring by
//!   default, plus the host's [`EngineBuilder::routes`]) and marks it routed.
//!
//! Each loop logs and backs off on errors and survives a panic in one iteration; each
//! iteration runs in a span (`engine.runner`, `engine.dispatch`, `engine.scheduler`,
//! `engine.events`) and each job in a `job` span, carrying ids only.
//! [`RunningEngine::shutdown`] stops every loop from claiming more, waits for in-flight
//! work (a send, a job, a runner pass) up to [`EngineConfig::shutdown_deadline`], and
//! reports what each loop did. Claimed jobs not yet started are given back; runner
//! leases are released at the end of each pass.
//!
//! Hosts and tests that drive time themselves (a [`ManualClock`](crate::ManualClock))
//! call [`Engine::run_due`] instead: one pass of every loop, in order, at the clock's
//! now.

mod builder;
mod config;
mod handlers;
mod loops;
mod notifier;
mod running;
mod workspaces;

pub use builder::{BuildError, EngineBuilder};
pub use config::EngineConfig;
pub use handlers::{BUILT_IN_JOBS, PURGE_WEBHOOK_DELIVERIES, SCORE_DECAY};
pub use notifier::LoggingNotifier;
pub use running::{RunningEngine, ShutdownReport, StartError, StepError, StepReport};
pub use workspaces::{KnownWorkspaces, StoreWorkspaces, WorkspaceDirectory};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::anomaly::AnomalyScanner;
use crate::clock::Clock;
use crate::enrichment::Enricher;
use crate::intake::IntakeService;
use crate::jobs::{EventBus, EventRouter, Scheduler, Worker};
use crate::outreach::approvals::ApprovalInbox;
use crate::outreach::dispatch::Dispatcher;
use crate::outreach::enroll::{Enroller, SequenceEditor};
use crate::outreach::forecast::Forecast;
use crate::outreach::inbound::{InboundHandler, InboundPipeline};
use crate::outreach::runner::Runner;
use crate::outreach::settings::SettingsProvider;
use crate::scoring::Scorer;
use crate::store::DynStore;

/// The CRM engine: the handles a host calls, and the loops [`start`](Self::start)
/// runs. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<DynStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
    config: EngineConfig,
    sequences: SequenceEditor,
    enroller: Enroller,
    inbox: ApprovalInbox,
    inbound: InboundHandler,
    pipeline: InboundPipeline,
    intake: Arc<IntakeService>,
    enricher: Arc<Enricher>,
    scorer: Scorer,
    forecast: Forecast,
    anomalies: AnomalyScanner,
    runner: Runner,
    dispatcher: Arc<Dispatcher>,
    worker: Worker,
    scheduler: Scheduler,
    events: EventBus,
    router: EventRouter,
    workspaces: Arc<dyn WorkspaceDirectory>,
    /// Whether a [`RunningEngine`] of this engine is alive.
    running: AtomicBool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store.backend_name())
            .field("name", &self.inner.config.name)
            .field("dispatcher", &self.inner.dispatcher)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder over `store`; see [`EngineBuilder`] for the seams and their defaults.
    #[must_use]
    pub fn builder(store: Arc<DynStore>) -> EngineBuilder {
        EngineBuilder::new(store)
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<DynStore> {
        &self.inner.store
    }

    /// The clock every part reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Where every part reads a workspace's settings.
    #[must_use]
    pub fn settings(&self) -> &Arc<dyn SettingsProvider> {
        &self.inner.settings
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Creates and edits sequences.
    #[must_use]
    pub fn sequences(&self) -> &SequenceEditor {
        &self.inner.sequences
    }

    /// Enrolls contacts in sequences.
    #[must_use]
    pub fn enroller(&self) -> &Enroller {
        &self.inner.enroller
    }

    /// The approval inbox.
    #[must_use]
    pub fn inbox(&self) -> &ApprovalInbox {
        &self.inner.inbox
    }

    /// Applies inbound events (replies, bounces, bookings, ...) to enrollments.
    #[must_use]
    pub fn inbound(&self) -> &InboundHandler {
        &self.inner.inbound
    }

    /// The inbound pipeline a host's webhook endpoints call: one call per provider
    /// request verifies, deduplicates in the store, parses and hands the events to
    /// [`inbound`](Self::inbound). Its old delivery records are purged by the
    /// [`PURGE_WEBHOOK_DELIVERIES`] periodic job.
    #[must_use]
    pub fn inbound_pipeline(&self) -> &InboundPipeline {
        &self.inner.pipeline
    }

    /// Lead intake (CSV, forms, webhooks); its `intake.process` jobs run on the
    /// engine's worker.
    #[must_use]
    pub fn intake(&self) -> &Arc<IntakeService> {
        &self.inner.intake
    }

    /// Enrichment over the builder's waterfall.
    #[must_use]
    pub fn enricher(&self) -> &Arc<Enricher> {
        &self.inner.enricher
    }

    /// Lead scoring.
    #[must_use]
    pub fn scorer(&self) -> &Scorer {
        &self.inner.scorer
    }

    /// Send forecasts.
    #[must_use]
    pub fn forecast(&self) -> &Forecast {
        &self.inner.forecast
    }

    /// Anomaly detection and channel pauses.
    #[must_use]
    pub fn anomalies(&self) -> &AnomalyScanner {
        &self.inner.anomalies
    }

    /// The event bus with the engine's routes (publish a host event with its jobs).
    #[must_use]
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// The sequence runner the runner loop ticks (for hosts that tick by hand).
    #[must_use]
    pub fn runner(&self) -> &Runner {
        &self.inner.runner
    }

    /// The dispatcher the dispatch loop runs (for hosts that dispatch by hand, and its
    /// dry-run channel).
    #[must_use]
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// The job worker, with every built-in handler registered.
    #[must_use]
    pub fn worker(&self) -> &Worker {
        &self.inner.worker
    }

    /// The scheduler of the periodic jobs.
    #[must_use]
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// The directory the system-wide periodic jobs list workspaces from.
    #[must_use]
    pub fn workspaces(&self) -> &Arc<dyn WorkspaceDirectory> {
        &self.inner.workspaces
    }
}
