//! [`EngineConfig`]: how often each loop polls, how much it takes at once, the names it
//! records as lease holder, and how long shutdown may take.

use std::time::Duration;

use crate::error::ValidationError;
use crate::jobs::WorkerConfig;
use crate::outreach::dispatch::DispatcherConfig;
use crate::outreach::runner::RunnerConfig;

/// How a running [`Engine`](super::Engine) paces and names its loops.
///
/// Build it with `EngineConfig::default().with_...`. The per-part configurations are
/// public so a host can tune anything the parts offer; [`with_name`](Self::with_name)
/// renames every lease holder at once.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The engine's name: the lease holders are `"{name}-runner"`,
    /// `"{name}-dispatcher"` and `"{name}-worker-{i}"`. Unique per process, or two
    /// engines share leases. The default is random.
    pub name: String,
    /// The sequence runner (its holder is set from `name`).
    pub runner: RunnerConfig,
    /// How long the runner loop waits between ticks.
    pub runner_interval: Duration,
    /// The outbox dispatcher (its worker name is set from `name`). Its idle sleep is
    /// how long the dispatch loop waits after a batch that claimed nothing.
    pub dispatcher: DispatcherConfig,
    /// The job worker (its name is set from `name`).
    pub worker: WorkerConfig,
    /// How often the scheduler enqueues due periodic jobs.
    pub scheduler_tick: Duration,
    /// How long the event router waits after a pass that found nothing to route.
    pub event_interval: Duration,
    /// Events routed per pass (1 to 1000).
    pub event_batch: u32,
    /// When approval items are expired (cron with seconds, UTC).
    pub approval_expiry_cron: String,
    /// When every workspace is scanned for anomalies (cron with seconds, UTC).
    pub anomaly_scan_cron: String,
    /// When scores decay: a rescore of every workspace (cron with seconds, UTC).
    pub score_decay_cron: String,
    /// When old webhook delivery records are purged (cron with seconds, UTC).
    pub webhook_purge_cron: String,
    /// How long a webhook delivery is remembered for deduplication: longer than any
    /// provider retries (Svix-based providers retry for about a day and a half).
    pub webhook_retention: chrono::Duration,
    /// The longest a loop backs off after repeated errors.
    pub max_error_backoff: Duration,
    /// How long [`RunningEngine::shutdown`](super::RunningEngine::shutdown) waits for
    /// in-flight work (a send, a job, a runner pass) before abandoning it.
    pub shutdown_deadline: Duration,
}

impl Default for EngineConfig {
    /// A random name, the parts' defaults, the runner every 5 s, the scheduler every
    /// 30 s, events every second in batches of 100, approvals expired every minute,
    /// anomalies scanned every 5 minutes, decay nightly at 03:00 UTC, webhook deliveries
    /// older than 7 days purged hourly, error backoff up
    /// to 60 s, and 30 s to shut down.
    fn default() -> Self {
        let random = uuid::Uuid::now_v7().simple().to_string();
        let tail = random.get(random.len().saturating_sub(8)..).unwrap_or("0");
        Self {
            name: format!("crm-engine-{tail}"),
            runner: RunnerConfig::default(),
            runner_interval: Duration::from_secs(5),
            dispatcher: DispatcherConfig::default(),
            worker: WorkerConfig::default(),
            scheduler_tick: Duration::from_secs(30),
            event_interval: Duration::from_secs(1),
            event_batch: 100,
            approval_expiry_cron: "0 * * * * *".into(),
            anomaly_scan_cron: "0 */5 * * * *".into(),
            score_decay_cron: "0 0 3 * * *".into(),
            webhook_purge_cron: "0 17 * * * *".into(),
            webhook_retention: chrono::Duration::days(7),
            max_error_backoff: Duration::from_secs(60),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

impl EngineConfig {
    /// Sets the engine's name (see [`name`](Self::name)).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// One poll interval for every loop: the runner, the dispatcher's idle sleep, the
    /// worker's idle poll, the scheduler tick and the event router. Tests use a few
    /// milliseconds.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.runner_interval = interval;
        self.scheduler_tick = interval;
        self.event_interval = interval;
        self.worker = self.worker.with_idle_poll(interval);
        let idle = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        self.dispatcher = self.dispatcher.with_idle_sleep(idle);
        self
    }

    /// Sets the runner's, the dispatcher's and the worker's batch sizes at once.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.runner = self.runner.with_batch_size(batch_size);
        self.dispatcher = self.dispatcher.with_batch_size(batch_size);
        self.worker = self.worker.with_batch_size(batch_size);
        self.event_batch = batch_size;
        self
    }

    /// Sets the sequence runner's configuration (its holder is still set from the name).
    #[must_use]
    pub fn with_runner(mut self, runner: RunnerConfig) -> Self {
        self.runner = runner;
        self
    }

    /// Sets the dispatcher's configuration (its worker is still set from the name).
    #[must_use]
    pub fn with_dispatcher(mut self, dispatcher: DispatcherConfig) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// Sets the job worker's configuration (its name is still set from the engine's).
    #[must_use]
    pub fn with_worker(mut self, worker: WorkerConfig) -> Self {
        self.worker = worker;
        self
    }

    /// Forces dry-run for every workspace (see
    /// [`DispatcherConfig::with_dry_run`]); without it a workspace's settings decide.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dispatcher = self.dispatcher.with_dry_run(dry_run);
        self
    }

    /// Sets the shutdown deadline.
    #[must_use]
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Sets the schedules of the built-in periodic jobs (cron with seconds, UTC).
    #[must_use]
    pub fn with_schedules(
        mut self,
        approval_expiry: impl Into<String>,
        anomaly_scan: impl Into<String>,
        score_decay: impl Into<String>,
    ) -> Self {
        self.approval_expiry_cron = approval_expiry.into();
        self.anomaly_scan_cron = anomaly_scan.into();
        self.score_decay_cron = score_decay.into();
        self
    }

    /// Sets how long webhook deliveries are remembered for deduplication.
    #[must_use]
    pub fn with_webhook_retention(mut self, retention: chrono::Duration) -> Self {
        self.webhook_retention = retention;
        self
    }

    /// A non-blank name, positive intervals, deadline and webhook retention, an event batch of 1 to 1000,
    /// and a valid runner configuration. (The cron expressions are checked when the
    /// engine builds its scheduler.)
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() {
            return Err(ValidationError::new("engine.name", "must not be empty"));
        }
        let positive = [
            ("engine.runner_interval", self.runner_interval),
            ("engine.scheduler_tick", self.scheduler_tick),
            ("engine.event_interval", self.event_interval),
            ("engine.max_error_backoff", self.max_error_backoff),
            ("engine.shutdown_deadline", self.shutdown_deadline),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ValidationError::new(field, "must be positive"));
            }
        }
        if self.webhook_retention <= chrono::Duration::zero() {
            return Err(ValidationError::new(
                "engine.webhook_retention",
                "must be positive",
            ));
        }
        crate::store::validate_limit(self.event_batch)?;
        self.named_runner().validate()
    }

    /// The runner configuration with the engine's holder name.
    pub(crate) fn named_runner(&self) -> RunnerConfig {
        self.runner
            .clone()
            .with_holder(format!("{}-runner", self.name))
    }

    /// The dispatcher configuration with the engine's worker name.
    pub(crate) fn named_dispatcher(&self) -> DispatcherConfig {
        self.dispatcher
            .clone()
            .with_worker(format!("{}-dispatcher", self.name))
    }

    /// The worker configuration with the engine's name.
    pub(crate) fn named_worker(&self) -> WorkerConfig {
        self.worker
            .clone()
            .with_name(format!("{}-worker", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reach_every_lease_holder() {
        let config = EngineConfig::default().with_name("eu-1");
        assert_eq!(config.named_runner().holder, "eu-1-runner");
        assert_eq!(config.named_dispatcher().worker(), "eu-1-dispatcher");
        assert_eq!(config.named_worker().name, "eu-1-worker");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_values_are_invalid() {
        assert!(EngineConfig::default().with_name(" ").validate().is_err());
        let zero = EngineConfig::default().with_shutdown_deadline(Duration::ZERO);
        assert!(zero.validate().is_err());
        let batch = EngineConfig {
            event_batch: 0,
            ..EngineConfig::default()
        };
        assert!(batch.validate().is_err());
    }

    #[test]
    fn one_poll_interval_paces_every_loop() {
        let ms = Duration::from_millis(5);
        let config = EngineConfig::default().with_poll_interval(ms);
        assert_eq!(config.runner_interval, ms);
        assert_eq!(config.worker.idle_poll, ms);
        assert_eq!(config.scheduler_tick, ms);
        assert_eq!(
            config.dispatcher.idle_sleep(),
            chrono::Duration::milliseconds(5)
        );
    }
}
