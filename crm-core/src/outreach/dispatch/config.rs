//! [`DispatcherConfig`]: how one dispatcher claims, retries and decides dry-run.

use chrono::Duration;

use crate::store::Page;

/// The environment variable that forces dry-run when set to `1` (or `true`).
pub const DRY_RUN_ENV: &str = "CRM_DRY_RUN";

/// Longest delay the dispatcher ever schedules: a year. Longer settings are clamped,
/// so date arithmetic cannot overflow.
pub(crate) fn max_delay() -> Duration {
    Duration::days(365)
}

/// Clamps `d` to `0 ..= max_delay()`.
fn clamp_delay(d: Duration) -> Duration {
    d.max(Duration::zero()).min(max_delay())
}

/// Settings of one [`Dispatcher`](super::Dispatcher).
///
/// Every setter clamps its value into a safe range instead of failing, so a
/// configuration built from untrusted input still yields a working dispatcher. Build it
/// with `DispatcherConfig::default().with_...`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DispatcherConfig {
    worker: String,
    batch_size: u32,
    concurrency: usize,
    lease_ttl: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    approval_ttl: Duration,
    pause_delay: Duration,
    settings_retry_delay: Duration,
    idle_sleep: Duration,
    reap_interval: Option<Duration>,
    dry_run: bool,
    read_env: bool,
}

impl Default for DispatcherConfig {
    /// A worker named `dispatcher-<random>`, batches of 100 processed 100 at a time
    /// (so a batch is sent in one wave),
    /// 5-minute leases, 5 attempts, backoff from 30 s doubling up to 1 h, approval items
    /// that expire after 3 days, a 1-hour pause for channels with an open send-health
    /// anomaly, messages of a workspace whose settings cannot be read held back for
    /// 1 minute, 1 s idle sleep, leases reaped every minute by [`run`](super::Dispatcher::run),
    /// no forced dry-run, and `CRM_DRY_RUN` read from the environment.
    fn default() -> Self {
        let random = uuid::Uuid::now_v7().simple().to_string();
        let tail = random.get(random.len().saturating_sub(8)..).unwrap_or("0");
        Self {
            worker: format!("dispatcher-{tail}"),
            batch_size: 100,
            concurrency: 100,
            lease_ttl: Duration::minutes(5),
            max_attempts: 5,
            backoff_base: Duration::seconds(30),
            backoff_cap: Duration::hours(1),
            approval_ttl: Duration::days(3),
            pause_delay: Duration::hours(1),
            settings_retry_delay: Duration::minutes(1),
            idle_sleep: Duration::seconds(1),
            reap_interval: Some(Duration::minutes(1)),
            dry_run: false,
            read_env: true,
        }
    }
}

impl DispatcherConfig {
    /// The lease owner recorded on claimed messages (blank names are ignored).
    #[must_use]
    pub fn with_worker(mut self, worker: impl Into<String>) -> Self {
        let worker = worker.into();
        if !worker.trim().is_empty() {
            self.worker = worker;
        }
        self
    }

    /// Messages claimed per batch, clamped to 1 ..= 1000.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size.clamp(1, Page::<()>::MAX_LIMIT);
        self
    }

    /// Messages of one batch processed at once, at least 1: also the size of a send
    /// wave, the messages the send gate marks sending together right before their
    /// adapter calls run at once, and whose accepted sends are recorded together.
    /// A smaller wave costs more store calls per batch; a larger one leaves more
    /// messages marked sending at a time (an unsubscribe landing during a wave
    /// reports them in flight instead of stopping them, and a crash mid-wave re-sends
    /// at most the wave, under the same idempotency keys).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Lease length of a claim, 1 second ..= 1 year. A send that takes longer than the
    /// lease may be claimed again by another dispatcher (the provider then deduplicates
    /// by idempotency key), so keep it well above the slowest provider call.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = clamp_delay(ttl).max(Duration::seconds(1));
        self
    }

    /// Attempts (claims that reached the provider) before a retryable failure becomes
    /// a dead letter, at least 1.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Exponential backoff: the first retry waits up to `base`, each later one up to
    /// twice as long, never more than `cap` (full jitter: a uniform pick below that).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = clamp_delay(base);
        self.backoff_cap = clamp_delay(cap).max(self.backoff_base);
        self
    }

    /// How long an approval item created by the dispatcher stays pending.
    #[must_use]
    pub fn with_approval_ttl(mut self, ttl: Duration) -> Self {
        self.approval_ttl = clamp_delay(ttl);
        self
    }

    /// How long a message waits when its channel is paused by an anomaly.
    #[must_use]
    pub fn with_pause_delay(mut self, delay: Duration) -> Self {
        self.pause_delay = clamp_delay(delay).max(Duration::seconds(1));
        self
    }

    /// How long a claimed message waits (its attempt given back) when its workspace's
    /// settings cannot be read, at least 1 second: short, so sends resume soon after
    /// the settings read again, and never zero, so a dispatcher does not spin on them.
    #[must_use]
    pub fn with_settings_retry_delay(mut self, delay: Duration) -> Self {
        self.settings_retry_delay = clamp_delay(delay).max(Duration::seconds(1));
        self
    }

    /// How long [`run`](super::Dispatcher::run) sleeps when a claim found nothing.
    #[must_use]
    pub fn with_idle_sleep(mut self, sleep: Duration) -> Self {
        self.idle_sleep = clamp_delay(sleep).max(Duration::milliseconds(1));
        self
    }

    /// How often [`run`](super::Dispatcher::run) returns expired leases to the queue
    /// (by the dispatcher's clock); `None` leaves reaping to someone else.
    #[must_use]
    pub fn with_reap_interval(mut self, interval: Option<Duration>) -> Self {
        self.reap_interval = interval.map(clamp_delay);
        self
    }

    /// Forces dry-run for every workspace. It can only turn dry-run on: a workspace
    /// whose settings ask for dry-run stays in dry-run.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Whether [`Dispatcher::new`](super::Dispatcher::new) reads [`DRY_RUN_ENV`] (once,
    /// at construction).
    #[must_use]
    pub fn with_env_dry_run(mut self, read_env: bool) -> Self {
        self.read_env = read_env;
        self
    }

    /// The lease owner name.
    #[must_use]
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Messages claimed per batch.
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }

    /// Messages processed at once.
    #[must_use]
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Lease length.
    #[must_use]
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Attempts before dead letter.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// First backoff ceiling.
    #[must_use]
    pub fn backoff_base(&self) -> Duration {
        self.backoff_base
    }

    /// Largest backoff.
    #[must_use]
    pub fn backoff_cap(&self) -> Duration {
        self.backoff_cap
    }

    /// Time to live of dispatcher-created approval items.
    #[must_use]
    pub fn approval_ttl(&self) -> Duration {
        self.approval_ttl
    }

    /// Delay for messages of a paused channel.
    #[must_use]
    pub fn pause_delay(&self) -> Duration {
        self.pause_delay
    }

    /// Delay for messages of a workspace whose settings cannot be read.
    #[must_use]
    pub fn settings_retry_delay(&self) -> Duration {
        self.settings_retry_delay
    }

    /// Sleep of an idle [`run`](super::Dispatcher::run) loop.
    #[must_use]
    pub fn idle_sleep(&self) -> Duration {
        self.idle_sleep
    }

    /// Reap interval of [`run`](super::Dispatcher::run).
    #[must_use]
    pub fn reap_interval(&self) -> Option<Duration> {
        self.reap_interval
    }

    /// Whether dry-run is forced by this configuration.
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether the environment is consulted.
    #[must_use]
    pub fn reads_env(&self) -> bool {
        self.read_env
    }
}

/// Whether a value of [`DRY_RUN_ENV`] forces dry-run: `1` or `true` (any case, trimmed).
#[must_use]
pub fn env_forces_dry_run(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_clamp_into_safe_ranges() {
        let c = DispatcherConfig::default()
            .with_batch_size(0)
            .with_concurrency(0)
            .with_max_attempts(0)
            .with_lease_ttl(Duration::seconds(-5))
            .with_backoff(Duration::seconds(10), Duration::seconds(1))
            .with_worker("  ");
        assert_eq!(c.batch_size(), 1);
        assert_eq!(c.concurrency(), 1);
        assert_eq!(c.max_attempts(), 1);
        assert_eq!(c.lease_ttl(), Duration::seconds(1));
        assert_eq!(c.backoff_cap(), Duration::seconds(10));
        assert!(c.worker().starts_with("dispatcher-"));
        assert_eq!(
            DispatcherConfig::default()
                .with_batch_size(5000)
                .batch_size(),
            1000
        );
    }

    #[test]
    fn only_one_and_true_force_dry_run() {
        assert!(env_forces_dry_run(Some("1")));
        assert!(env_forces_dry_run(Some(" TRUE ")));
        assert!(!env_forces_dry_run(Some("0")));
        assert!(!env_forces_dry_run(Some("")));
        assert!(!env_forces_dry_run(None));
    }
}
