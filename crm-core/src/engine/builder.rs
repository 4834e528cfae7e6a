//! [`EngineBuilder`]: the seams of an engine, each with a default.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::anomaly::AnomalyScanner;
use crate::anomaly::LogAnomalyNotifier;
use crate::approval::{AnomalyNotifier, ApprovalPolicy, ManualApproval, Notifier};
use crate::channel::ChannelResolver;
use crate::clock::{Clock, SystemClock};
use crate::enrichment::{AutoEnrichment, BudgetPolicy, Enricher, Waterfall, auto_enrich_routes};
use crate::error::ValidationError;
use crate::intake::IntakeService;
use crate::jobs::{EventBus, EventRouter, EventRoutes, JobHandler, PeriodicJob, Scheduler, Worker};
use crate::outreach::approvals::{
    ApprovalInbox, ApproverDirectory, GraduatedRules, StaticApprovers,
};
use crate::outreach::dispatch::{ChannelRegistry, Dispatcher, DryRunChannel};
use crate::outreach::enroll::{Enroller, SequenceEditor};
use crate::outreach::forecast::Forecast;
use crate::outreach::inbound::InboundPipeline;
use crate::outreach::runner::{MergeValues, Runner, RunnerError};
use crate::outreach::settings::{SettingsProvider, StoreSettings};
use crate::scoring::{Scorer, scoring_routes};
use crate::store::DynStore;

use super::config::EngineConfig;
use super::handlers::{self, Parts};
use super::notifier::LoggingNotifier;
use super::workspaces::{StoreWorkspaces, WorkspaceDirectory};
use super::{Engine, Inner};

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The [`EngineConfig`] is invalid.
    #[error("invalid engine configuration")]
    Config(#[source] ValidationError),
    /// A periodic job's schedule is invalid.
    #[error("invalid schedule for the periodic job {job}")]
    Schedule {
        /// The job kind.
        job: String,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
}

/// Which approval policy the dispatcher asks.
#[derive(Debug, Clone)]
enum Policy {
    Manual,
    Graduated,
    Custom(Arc<dyn ApprovalPolicy>),
}

/// Builds an [`Engine`] from a store. Every other seam has a default:
///
/// | seam | default |
/// |---|---|
/// | [`clock`](Self::clock) | [`SystemClock`] |
/// | [`settings`](Self::settings) | [`StoreSettings`]: each workspace's settings from the store's registry; an unregistered or unreadable workspace sends nothing (fail closed) |
/// | [`channels`](Self::channels) | an empty [`ChannelRegistry`] (only dry-run sends succeed); hosts pass a per-workspace resolver (`crm_channels::resolver::ProviderChannels`) or a fixed [`channel_registry`](Self::channel_registry) |
/// | [`enrichment`](Self::enrichment) | an empty [`Waterfall`] (every lookup misses) |
/// | [`approval_policy`](Self::approval_policy) | [`ManualApproval`]: a person approves every send |
/// | [`notifier`](Self::notifier) | [`LoggingNotifier`] |
/// | [`anomaly_notifier`](Self::anomaly_notifier) | [`LogAnomalyNotifier`] |
/// | [`approvers`](Self::approvers) | [`StaticApprovers`] with nobody: no one may decide until the host says who |
/// | [`workspaces`](Self::workspaces) | [`StoreWorkspaces`]: every workspace of the store's registry |
/// | [`config`](Self::config) | [`EngineConfig::default`] |
///
/// The worker and the dispatcher always listen to the store's
/// [`Wakeups`](crate::store::Wakeups) ([`WakeSource`](crate::store::WakeSource)): they
/// claim as soon as work arrives, and their idle polls are only the safety net.
pub struct EngineBuilder {
    store: Arc<DynStore>,
    clock: Arc<dyn Clock>,
    settings: Option<Arc<dyn SettingsProvider>>,
    channels: Arc<dyn ChannelResolver>,
    waterfall: Waterfall,
    /// Whether the host gave a waterfall: auto-enrichment is wired only then.
    enrichment_configured: bool,
    default_budget: Option<BudgetPolicy>,
    budgets: Vec<(crate::ids::WorkspaceId, BudgetPolicy)>,
    policy: Policy,
    notifier: Arc<dyn Notifier>,
    anomaly_notifier: Arc<dyn AnomalyNotifier>,
    approvers: Arc<dyn ApproverDirectory>,
    workspaces: Option<Arc<dyn WorkspaceDirectory>>,
    merge_values: Option<Arc<dyn MergeValues>>,
    dry_run: Option<DryRunChannel>,
    routes: EventRoutes,
    handlers: Vec<(String, Arc<dyn JobHandler>)>,
    periodic: Vec<PeriodicJob>,
    config: EngineConfig,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store.backend_name())
            .field("channels", &self.channels)
            .field("policy", &self.policy)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    pub(super) fn new(store: Arc<DynStore>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            // `None` is `StoreSettings` over the store, built in `build`.
            settings: None,
            // crm-core cannot name crm-channels' `ProviderChannels` (layering), so the
            // default resolves nothing and hosts pass their resolver.
            channels: Arc::new(ChannelRegistry::new()),
            waterfall: Waterfall::new(),
            enrichment_configured: false,
            default_budget: None,
            budgets: Vec::new(),
            policy: Policy::Manual,
            notifier: Arc::new(LoggingNotifier),
            anomaly_notifier: Arc::new(LogAnomalyNotifier),
            approvers: Arc::new(StaticApprovers::new()),
            workspaces: None,
            merge_values: None,
            dry_run: None,
            routes: scoring_routes(EventRoutes::new()),
            handlers: Vec::new(),
            periodic: Vec::new(),
            config: EngineConfig::default(),
        }
    }

    /// The source of time (default [`SystemClock`]; tests pass a
    /// [`ManualClock`](crate::ManualClock)).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where every part reads a workspace's settings (default: [`StoreSettings`]
    /// over the store; [`StaticSettings`](crate::outreach::settings::StaticSettings) suits tests that register nothing).
    #[must_use]
    pub fn settings(mut self, settings: Arc<dyn SettingsProvider>) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Where the dispatcher gets the adapter of each message's workspace and channel
    /// (given the workspace's channel configuration from its settings), for example
    /// `crm_channels::resolver::ProviderChannels`, which builds them from `secret://`
    /// references.
    #[must_use]
    pub fn channels(mut self, channels: Arc<dyn ChannelResolver>) -> Self {
        self.channels = channels;
        self
    }

    /// One adapter per channel for every workspace (a shorthand for
    /// [`channels`](Self::channels) with a [`ChannelRegistry`]).
    #[must_use]
    pub fn channel_registry(self, registry: ChannelRegistry) -> Self {
        self.channels(Arc::new(registry))
    }

    /// The enrichment providers, in waterfall order per lookup kind. With a
    /// waterfall, the engine also runs auto-enrichment: `contact.created` is routed
    /// to an [`ENRICH_CONTACT_JOB`](crate::enrichment::ENRICH_CONTACT_JOB) job that [`AutoEnrichment`] runs for workspaces
    /// whose settings turn `auto_enrich` on.
    #[must_use]
    pub fn enrichment(mut self, waterfall: Waterfall) -> Self {
        self.waterfall = waterfall;
        self.enrichment_configured = true;
        self
    }

    /// The monthly enrichment budget of workspaces without one of their own (default:
    /// no limit).
    #[must_use]
    pub fn default_enrichment_budget(mut self, budget: BudgetPolicy) -> Self {
        self.default_budget = Some(budget);
        self
    }

    /// The monthly enrichment budget of one workspace.
    #[must_use]
    pub fn enrichment_budget(
        mut self,
        workspace_id: crate::ids::WorkspaceId,
        budget: BudgetPolicy,
    ) -> Self {
        self.budgets.push((workspace_id, budget));
        self
    }

    /// The policy asked about every message without an approval item.
    #[must_use]
    pub fn approval_policy(mut self, policy: Arc<dyn ApprovalPolicy>) -> Self {
        self.policy = Policy::Custom(policy);
        self
    }

    /// Uses [`GraduatedRules`] over the engine's store, clock and settings: each
    /// workspace's opt-in auto-approval rules, a person for everything else.
    #[must_use]
    pub fn graduated_approval(mut self) -> Self {
        self.policy = Policy::Graduated;
        self
    }

    /// Who hears about approval items that wait for a person.
    #[must_use]
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Who hears about raised anomalies (the periodic scan's and the inbound
    /// handler's); default [`LogAnomalyNotifier`].
    #[must_use]
    pub fn anomaly_notifier(mut self, notifier: Arc<dyn AnomalyNotifier>) -> Self {
        self.anomaly_notifier = notifier;
        self
    }

    /// Who may decide approval items.
    #[must_use]
    pub fn approvers(mut self, approvers: Arc<dyn ApproverDirectory>) -> Self {
        self.approvers = approvers;
        self
    }

    /// Lists the workspaces of the system-wide periodic jobs from `directory` (for
    /// example a [`KnownWorkspaces`](super::KnownWorkspaces) subset) instead of the store's registry.
    #[must_use]
    pub fn workspaces(mut self, directory: Arc<dyn WorkspaceDirectory>) -> Self {
        self.workspaces = Some(directory);
        self
    }

    /// The `extra.*` merge values of templates (runner and forecast).
    #[must_use]
    pub fn merge_values(mut self, values: Arc<dyn MergeValues>) -> Self {
        self.merge_values = Some(values);
        self
    }

    /// Records dry-run sends in `dry_run` (for example one the host also reads).
    #[must_use]
    pub fn dry_run_channel(mut self, dry_run: DryRunChannel) -> Self {
        self.dry_run = Some(dry_run);
        self
    }

    /// Adds event-to-job routes to the built-in ones (rescoring).
    #[must_use]
    pub fn routes(mut self, add: impl FnOnce(EventRoutes) -> EventRoutes) -> Self {
        self.routes = add(self.routes);
        self
    }

    /// Registers a job handler beside the built-in ones (the same kind replaces a
    /// built-in handler).
    #[must_use]
    pub fn job_handler(mut self, kind: impl Into<String>, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.push((kind.into(), handler));
        self
    }

    /// Schedules a periodic job beside the built-in ones.
    #[must_use]
    pub fn periodic_job(mut self, job: PeriodicJob) -> Self {
        self.periodic.push(job);
        self
    }

    /// Paces and names the loops.
    #[must_use]
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the engine: every handle is ready; nothing runs until
    /// [`Engine::start`].
    ///
    /// # Errors
    /// [`BuildError::Config`] for an invalid configuration, [`BuildError::Schedule`]
    /// for a bad periodic schedule.
    pub fn build(self) -> Result<Engine, BuildError> {
        let config = self.config;
        config.validate().map_err(BuildError::Config)?;
        let (store, clock) = (self.store, self.clock);
        // The store's wake-ups: the worker and the dispatcher claim as soon as work
        // arrives, their idle polls only the safety net.
        let wakeups = store.wakeups();
        let settings = self
            .settings
            .unwrap_or_else(|| Arc::new(StoreSettings::new(store.clone())));

        let workspaces = self
            .workspaces
            .unwrap_or_else(|| Arc::new(StoreWorkspaces::new(store.clone())));
        let sequences = SequenceEditor::new(store.clone(), clock.clone());
        let enroller = Enroller::new(store.clone(), clock.clone(), settings.clone());
        let inbox = ApprovalInbox::new(store.clone(), clock.clone(), self.approvers)
            .with_notifier(self.notifier.clone());
        let pipeline = InboundPipeline::new(store.clone(), clock.clone(), settings.clone());
        let inbound = pipeline.handler().clone();
        let intake = Arc::new(IntakeService::new(store.clone(), clock.clone()));
        let mut enricher = Enricher::new(store.clone(), clock.clone(), self.waterfall);
        if let Some(budget) = self.default_budget {
            enricher = enricher.with_default_budget(budget);
        }
        for (workspace_id, budget) in self.budgets {
            enricher = enricher.with_budget(workspace_id, budget);
        }
        let enricher = Arc::new(enricher);
        let scorer = Scorer::new(store.clone(), clock.clone());
        let anomalies = AnomalyScanner::new(store.clone(), clock.clone(), settings.clone())
            .with_notifier(self.anomaly_notifier);
        let mut forecast = Forecast::new(store.clone(), clock.clone(), settings.clone())
            .with_touch_limit(config.runner.enforce_touch_limit);
        let mut runner = Runner::new(
            store.clone(),
            clock.clone(),
            settings.clone(),
            config.named_runner(),
        )
        .map_err(|e| match e {
            RunnerError::Config(e) => BuildError::Config(e),
            other => BuildError::Config(ValidationError::new("engine.runner", other.to_string())),
        })?;
        if let Some(values) = self.merge_values {
            forecast = forecast.with_merge_values(values.clone());
            runner = runner.with_merge_values(values);
        }

        let policy: Arc<dyn ApprovalPolicy> = match self.policy {
            Policy::Manual => Arc::new(ManualApproval),
            Policy::Graduated => Arc::new(GraduatedRules::new(
                store.clone(),
                clock.clone(),
                settings.clone(),
            )),
            Policy::Custom(policy) => policy,
        };
        let mut dispatcher = Dispatcher::with_resolver(
            store.clone(),
            clock.clone(),
            settings.clone(),
            self.channels,
            config.named_dispatcher(),
        )
        .with_policy(policy)
        .with_notifier(self.notifier)
        .with_wakeups(wakeups.clone());
        if let Some(dry_run) = self.dry_run {
            dispatcher = dispatcher.with_dry_run_channel(dry_run);
        }

        let parts = Parts {
            intake: &intake,
            scorer: &scorer,
            inbox: &inbox,
            anomalies: &anomalies,
            jobs: store.clone(),
            workspaces: workspaces.clone(),
            pipeline: &pipeline,
            webhook_retention: config.webhook_retention,
            auto_enrich: self.enrichment_configured.then(|| {
                AutoEnrichment::new(
                    store.clone(),
                    enricher.clone(),
                    settings.clone(),
                    clock.clone(),
                )
            }),
        };
        let routes = if self.enrichment_configured {
            auto_enrich_routes(self.routes)
        } else {
            self.routes
        };
        let registry = handlers::registry(&parts, &self.handlers);
        let worker = Worker::new(
            store.clone(),
            registry,
            clock.clone(),
            config.named_worker(),
        )
        .with_wakeups(wakeups);
        let periodic =
            handlers::periodic_jobs(&config, &self.periodic).map_err(|(job, source)| {
                BuildError::Schedule {
                    job: job.to_owned(),
                    source,
                }
            })?;
        let scheduler = Scheduler::new(
            store.clone(),
            clock.clone(),
            periodic,
            config.scheduler_tick,
        )
        .map_err(|source| BuildError::Schedule {
            job: "scheduler".to_owned(),
            source,
        })?;
        let router = EventRouter::new(store.clone(), routes.clone(), clock.clone());
        let events = EventBus::new(store.clone(), routes, clock.clone());

        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
                config,
                sequences,
                enroller,
                inbox,
                inbound,
                pipeline,
                intake,
                enricher,
                scorer,
                forecast,
                anomalies,
                runner,
                dispatcher: Arc::new(dispatcher),
                worker,
                scheduler,
                events,
                router,
                workspaces,
                running: AtomicBool::new(false),
            }),
        })
    }
}
