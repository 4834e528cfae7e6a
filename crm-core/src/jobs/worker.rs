//! The worker: N claim loops over a [`HandlerRegistry`], a lease reaper, and graceful
//! shutdown.

use std::ops::AddAssign;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind};
use crate::jobs::backoff::{Backoff, Jitter};
use crate::jobs::handler::{HandlerRegistry, JobContext, JobError};
use crate::model::{Job, JobStatus};
use crate::store::{Claim, JobStore, Scope, WakeSubscription, WakeTopic, Wakeups};

/// How a [`Worker`] claims and retries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The worker's name; claim loop `i` records `"{name}-{i}"` as lease owner.
    pub name: String,
    /// How many claim loops run at once (at least 1).
    pub concurrency: usize,
    /// Jobs claimed per loop iteration (1 to 1000). A loop runs its batch one job after
    /// another, so the lease TTL must cover a whole batch.
    pub batch_size: u32,
    /// Lease length of a claim (positive). A job whose handler runs longer may be
    /// reaped and run again by another worker.
    pub lease_ttl: Duration,
    /// Delay before retrying a job after a retryable failure without `retry_after`.
    pub backoff: Backoff,
    /// How long a loop waits after a claim found nothing (or failed). With the
    /// store's [`Wakeups`] (see [`Worker::with_wakeups`]) an idle loop claims again as
    /// soon as a job arrives; this poll is then only the safety net for a lost
    /// signal.
    pub idle_poll: Duration,
    /// How often the reaper returns expired leases.
    pub reap_interval: Duration,
    /// Which tenants the worker serves.
    pub scope: Scope,
}

impl Default for WorkerConfig {
    /// `"worker"`, 4 loops of 10 jobs, 5-minute leases, default [`Backoff`], 1 s idle
    /// poll, reaping every 30 s, every workspace.
    fn default() -> Self {
        Self {
            name: "worker".into(),
            concurrency: 4,
            batch_size: 10,
            lease_ttl: Duration::from_secs(300),
            backoff: Backoff::default(),
            idle_poll: Duration::from_secs(1),
            reap_interval: Duration::from_secs(30),
            scope: Scope::All,
        }
    }
}

impl WorkerConfig {
    /// Sets the worker name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the number of claim loops.
    #[must_use]
    pub fn with_concurrency(mut self, loops: usize) -> Self {
        self.concurrency = loops;
        self
    }

    /// Sets the claim batch size.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets the lease length.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the backoff base and cap (keeping the jitter).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff::new(base, cap).with_jitter(self.backoff.jitter);
        self
    }

    /// Sets the backoff jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.backoff = self.backoff.with_jitter(jitter);
        self
    }

    /// Sets the idle poll interval.
    #[must_use]
    pub fn with_idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// Sets the reap interval.
    #[must_use]
    pub fn with_reap_interval(mut self, reap_interval: Duration) -> Self {
        self.reap_interval = reap_interval;
        self
    }

    /// Sets the tenants served.
    #[must_use]
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
}

/// What a worker did, summed over its loops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed.
    pub succeeded: u64,
    /// Jobs put back for a later retry.
    pub retried: u64,
    /// Jobs dead-lettered (permanent failure, no handler, or attempts exhausted).
    pub dead: u64,
    /// Claimed jobs given back unstarted at shutdown.
    pub released: u64,
    /// Jobs whose lease was lost before the outcome could be stored (another worker
    /// reclaimed them), or whose outcome the store refused.
    pub lost: u64,
}

impl AddAssign for WorkerStats {
    fn add_assign(&mut self, other: Self) {
        self.claimed += other.claimed;
        self.succeeded += other.succeeded;
        self.retried += other.retried;
        self.dead += other.dead;
        self.released += other.released;
        self.lost += other.lost;
    }
}

/// Runs claimed jobs through their handlers.
///
/// Each claim loop claims only the kinds in its [`HandlerRegistry`] (a worker with an
/// empty registry claims nothing), runs the batch one job after another, and stores the
/// outcome: `complete_job` on success; `retry_job` at `now + retry_after` or
/// `now + backoff(attempts)` on a retryable failure (the store dead-letters the job
/// when its attempts are exhausted); `dead_letter_job` on a permanent failure or a kind
/// without handler. A panicking handler counts as a retryable failure.
///
/// Cloning is cheap; clones share the store, registry and clock.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
    wakeups: Wakeups,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn JobStore>,
    registry: HandlerRegistry,
    kinds: Vec<String>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
}

impl Worker {
    /// A worker over `store` running `registry`'s handlers, timed by `clock`.
    #[must_use]
    pub fn new(
        store: Arc<dyn JobStore>,
        registry: HandlerRegistry,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        let kinds = registry.kinds().map(str::to_owned).collect();
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                kinds,
                clock,
                config,
            }),
            wakeups: Wakeups::polling(),
        }
    }

    /// Wakes idle claim loops through `wakeups` (the store's, see
    /// [`WakeSource`](crate::store::WakeSource)) when a job arrives, instead of only
    /// after [`WorkerConfig::idle_poll`]. Without it the loops only poll.
    #[must_use]
    pub fn with_wakeups(mut self, wakeups: Wakeups) -> Self {
        self.wakeups = wakeups;
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WorkerConfig {
        &self.inner.config
    }

    /// Runs `concurrency` claim loops and a reaper loop on the Tokio runtime until
    /// `shutdown` turns `true` (or its sender is dropped), then shuts down gracefully:
    /// no new claims; a job whose handler has started is finished and its outcome
    /// stored; claimed jobs not yet started are released with their attempt given back.
    /// Returns what the loops did. Store errors are logged and retried after the idle
    /// poll; they never stop the worker.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> WorkerStats {
        let mut tasks = JoinSet::new();
        for i in 0..self.inner.config.concurrency.max(1) {
            let worker = self.clone();
            let rx = shutdown.clone();
            tasks.spawn(async move { worker.claim_loop(i, rx).await });
        }
        let worker = self.clone();
        tasks.spawn(async move { worker.reaper_loop(shutdown).await });
        let mut total = WorkerStats::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(stats) => total += stats,
                Err(err) => tracing::error!(error = %err, "worker loop ended abnormally"),
            }
        }
        total
    }

    /// Claims one batch at the clock's now and runs it. For tests and hosts that drive
    /// the worker themselves.
    pub async fn run_once(&self) -> Result<WorkerStats, StoreError> {
        let name = format!("{}-once", self.inner.config.name);
        let jobs = self.claim(&name).await?;
        Ok(self.process(&name, jobs, None).await)
    }

    /// Runs batches until a claim finds nothing due at the clock's now. Jobs retried to
    /// a later time are not waited for.
    pub async fn drain(&self) -> Result<WorkerStats, StoreError> {
        let mut total = WorkerStats::default();
        loop {
            let stats = self.run_once().await?;
            if stats.claimed == 0 {
                return Ok(total);
            }
            total += stats;
        }
    }

    /// Returns expired leases in the worker's scope to the queue once (see
    /// [`JobStore::reap_expired_jobs`]).
    pub async fn reap_once(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        inner
            .store
            .reap_expired_jobs(inner.config.scope, inner.clock.now())
            .await
    }

    async fn claim(&self, name: &str) -> Result<Vec<Job>, StoreError> {
        let inner = &self.inner;
        if inner.kinds.is_empty() {
            return Ok(Vec::new());
        }
        let ttl =
            chrono::Duration::from_std(inner.config.lease_ttl).unwrap_or(chrono::Duration::MAX);
        let claim = Claim::new(
            inner.config.scope,
            name,
            inner.clock.now(),
            ttl,
            inner.config.batch_size,
        )
        .with_kinds(inner.kinds.iter().cloned());
        inner.store.claim_jobs(&claim).await
    }

    async fn claim_loop(self, index: usize, mut shutdown: watch::Receiver<bool>) -> WorkerStats {
        let name = format!("{}-{index}", self.inner.config.name);
        let mut stats = WorkerStats::default();
        // Subscribed before the first claim: a job enqueued after any claim that
        // missed it signals the wait that follows.
        let mut wake = self.wakeups.subscribe(WakeTopic::Jobs);
        while !is_shutdown(&shutdown) {
            match self.claim(&name).await {
                Ok(jobs) if !jobs.is_empty() => {
                    stats += self.process(&name, jobs, Some(&shutdown)).await;
                }
                Ok(_) => woken_wait(&mut shutdown, &mut wake, self.inner.config.idle_poll).await,
                Err(err) => {
                    tracing::warn!(worker = %name, error = %err, "claiming jobs failed");
                    idle_wait(&mut shutdown, self.inner.config.idle_poll).await;
                }
            }
        }
        stats
    }

    async fn reaper_loop(self, mut shutdown: watch::Receiver<bool>) -> WorkerStats {
        while !is_shutdown(&shutdown) {
            match self.reap_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reaped = n, "returned expired job leases"),
                Err(err) => tracing::warn!(error = %err, "reaping job leases failed"),
            }
            idle_wait(&mut shutdown, self.inner.config.reap_interval).await;
        }
        WorkerStats::default()
    }

    /// Runs `jobs` in order; once `shutdown` is set, the rest are released.
    async fn process(
        &self,
        name: &str,
        jobs: Vec<Job>,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> WorkerStats {
        let mut stats = WorkerStats {
            claimed: jobs.len() as u64,
            ..WorkerStats::default()
        };
        for job in jobs {
            let Some(token) = job.lease.as_ref().map(|l| l.token) else {
                tracing::error!(job_id = %job.id, "claimed job carries no lease; skipped");
                stats.lost += 1;
                continue;
            };
            if shutdown.is_some_and(is_shutdown) {
                let released = self
                    .inner
                    .store
                    .release_job(job.workspace_id, job.id, token, self.inner.clock.now())
                    .await;
                match released {
                    Ok(_) => stats.released += 1,
                    Err(err) => {
                        tracing::warn!(job_id = %job.id, error = %err, "releasing a job failed");
                        stats.lost += 1;
                    }
                }
                continue;
            }
            // One span per job, ids only: a handler's own logs and spans nest in it.
            let span = tracing::info_span!(
                "job",
                job_id = %job.id,
                kind = %job.kind,
                workspace_id = %job.workspace_id,
                attempt = job.attempts,
                worker = %name,
            );
            self.run_job(name, &job, token, &mut stats)
                .instrument(span)
                .await;
        }
        stats
    }

    async fn run_job(&self, name: &str, job: &Job, token: i64, stats: &mut WorkerStats) {
        let inner = &self.inner;
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
            Ok(()) => inner.store.complete_job(ws, id, token, now).await,
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
}

/// `now + delay`, saturating at the largest instant.
pub(crate) fn add(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Shutdown is asked for when the flag is `true` or its sender is gone.
pub(crate) fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Waits until `wake` is signalled, `period` passes or the shutdown flag changes.
pub(crate) async fn woken_wait(
    shutdown: &mut watch::Receiver<bool>,
    wake: &mut WakeSubscription,
    period: Duration,
) {
    let woken = wake.wait(period);
    let changed = shutdown.changed();
    futures::pin_mut!(woken, changed);
    let _ = futures::future::select(woken, changed).await;
}

/// Sleeps for `period` or until the shutdown flag changes.
pub(crate) async fn idle_wait(shutdown: &mut watch::Receiver<bool>, period: Duration) {
    let sleep = tokio::time::sleep(period);
    let changed = shutdown.changed();
    futures::pin_mut!(sleep, changed);
    let _ = futures::future::select(sleep, changed).await;
}
