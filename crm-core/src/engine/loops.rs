//! The background loops of a running engine, and the single pass of
//! [`Engine::run_due`](super::Engine::run_due).
//!
//! Every loop has the same shape: until shutdown, run one iteration in its span,
//! guarded against errors and panics; wait the loop's interval (nothing when the
//! iteration filled its batch, a growing backoff after errors); a shutdown signal cuts
//! the wait short but never an iteration, so an in-flight send or runner pass ends
//! normally.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::StoreError;
use crate::jobs::{RouteReport, WorkerStats};
use crate::outreach::dispatch::DispatchReport;
use crate::store::{Scope, WakeSubscription, WakeTopic};

use super::Inner;

/// What one loop did until it stopped.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) iterations: u64,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    pub(crate) enqueued: u64,
    pub(crate) dispatched: DispatchReport,
    pub(crate) jobs: WorkerStats,
    pub(crate) periodic: u64,
    pub(crate) routed: u64,
}

/// How an iteration went, for the wait that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Went {
    /// It filled its batch: more is likely waiting, go again at once.
    Busy,
    /// Nothing (more) to do: wait the interval.
    Idle,
    /// It failed or panicked: back off.
    Failed,
}

/// The wait after an iteration: the interval, nothing when busy, or the interval
/// doubled per consecutive failure up to the cap.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    cap: Duration,
    failures: u32,
}

impl Pace {
    fn new(interval: Duration, cap: Duration) -> Self {
        Self {
            interval,
            cap: cap.max(interval),
            failures: 0,
        }
    }

    fn after(&mut self, went: Went) -> Duration {
        match went {
            Went::Busy => {
                self.failures = 0;
                Duration::ZERO
            }
            Went::Idle => {
                self.failures = 0;
                self.interval
            }
            Went::Failed => {
                self.failures = self.failures.saturating_add(1);
                let factor = 1u32 << self.failures.min(16);
                self.interval.saturating_mul(factor).min(self.cap)
            }
        }
    }
}

/// Whether the loops are asked to stop (the flag is set, or the engine handle that
/// owns the sender is gone).
pub(crate) fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps `period`, or less when shutdown is asked for.
async fn wait(stop: &mut watch::Receiver<bool>, period: Duration) {
    if period.is_zero() {
        tokio::task::yield_now().await;
        return;
    }
    let sleep = tokio::time::sleep(period);
    let changed = stop.changed();
    futures::pin_mut!(sleep, changed);
    let _ = futures::future::select(sleep, changed).await;
}

/// After an idle iteration, waits `period` or until `wake` is signalled; otherwise as
/// [`wait`]. Shutdown cuts either short.
async fn wait_woken(
    stop: &mut watch::Receiver<bool>,
    wake: &mut WakeSubscription,
    went: Went,
    period: Duration,
) {
    if went != Went::Idle {
        return wait(stop, period).await;
    }
    let woken = wake.wait(period);
    let changed = stop.changed();
    futures::pin_mut!(woken, changed);
    let _ = futures::future::select(woken, changed).await;
}

/// Runs `iteration` in `span`, turning a panic into `None`.
async fn guarded<T>(span: tracing::Span, iteration: impl Future<Output = T>) -> Option<T> {
    AssertUnwindSafe(iteration.instrument(span))
        .catch_unwind()
        .await
        .ok()
}

/// Counts a failed or panicked iteration and logs it (the error's text only: errors
/// of this crate carry ids and kinds, never addresses or bodies).
fn failed(tally: &mut Tally, part: &'static str, error: Option<&dyn std::fmt::Display>) -> Went {
    match error {
        Some(error) => {
            tally.errors += 1;
            tracing::warn!(part, error = %error, "engine loop iteration failed; backing off");
        }
        None => {
            tally.panics += 1;
            tracing::error!(part, "engine loop iteration panicked; backing off");
        }
    }
    Went::Failed
}

/// The sequence runner: one tick over every workspace with due enrollments.
pub(crate) async fn runner(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) -> Tally {
    let config = &inner.config;
    let mut pace = Pace::new(config.runner_interval, config.max_error_backoff);
    let mut tally = Tally::default();
    while !stopped(&stop) {
        tally.iterations += 1;
        let span = tracing::info_span!("engine.runner", iteration = tally.iterations);
        let went = match guarded(span, inner.runner.tick()).await {
            Some(Ok(report)) => {
                tally.enqueued += report.enqueued() as u64;
                for failure in &report.failed {
                    tally.errors += 1;
                    tracing::warn!(
                        workspace_id = %failure.workspace_id,
                        error = %failure.error,
                        "runner pass over a workspace failed"
                    );
                }
                Went::Idle
            }
            Some(Err(e)) => failed(&mut tally, "runner", Some(&e)),
            None => failed(&mut tally, "runner", None),
        };
        wait(&mut stop, pace.after(went)).await;
    }
    tally
}

/// The outbox dispatcher: a batch at a time, and expired outbox leases returned every
/// reap interval of the engine's clock.
pub(crate) async fn dispatcher(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) -> Tally {
    let dispatcher = &inner.dispatcher;
    let idle = dispatcher
        .config()
        .idle_sleep()
        .to_std()
        .unwrap_or_default();
    let mut pace = Pace::new(idle, inner.config.max_error_backoff);
    let mut tally = Tally::default();
    let mut last_reap: Option<DateTime<Utc>> = None;
    // Subscribed before the first claim: a message released or enqueued after a claim
    // that missed it cuts the idle wait short (the store's wake-ups, when it has them).
    let mut wake = dispatcher.wakeups().subscribe(WakeTopic::Outbox);
    while !stopped(&stop) {
        tally.iterations += 1;
        if let Some(interval) = dispatcher.config().reap_interval() {
            let now = inner.clock.now();
            if last_reap.is_none_or(|at| now - at >= interval) {
                last_reap = Some(now);
                match dispatcher.reap_expired_leases().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(reaped = n, "expired outbox leases returned"),
                    Err(e) => tracing::warn!(error = %e, "reaping outbox leases failed"),
                }
            }
        }
        let span = tracing::info_span!("engine.dispatch", iteration = tally.iterations);
        let went = match guarded(span, dispatcher.dispatch_batch()).await {
            Some(Ok(report)) => {
                tally.dispatched.merge(&report);
                if report.claimed >= u64::from(dispatcher.config().batch_size()) {
                    Went::Busy
                } else {
                    Went::Idle
                }
            }
            Some(Err(e)) => failed(&mut tally, "dispatcher", Some(&e)),
            None => failed(&mut tally, "dispatcher", None),
        };
        wait_woken(&mut stop, &mut wake, went, pace.after(went)).await;
    }
    tally
}

/// The scheduler: enqueues the periodic jobs that fell due.
pub(crate) async fn scheduler(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) -> Tally {
    let mut pace = Pace::new(inner.config.scheduler_tick, inner.config.max_error_backoff);
    let mut tally = Tally::default();
    while !stopped(&stop) {
        tally.iterations += 1;
        let span = tracing::info_span!("engine.scheduler", iteration = tally.iterations);
        let went = match guarded(span, inner.scheduler.tick()).await {
            Some(Ok(report)) => {
                tally.periodic += report.enqueued.len() as u64;
                Went::Idle
            }
            Some(Err(e)) => failed(&mut tally, "scheduler", Some(&e)),
            None => failed(&mut tally, "scheduler", None),
        };
        wait(&mut stop, pace.after(went)).await;
    }
    tally
}

/// The event router: turns appended, unrouted events into their jobs.
pub(crate) async fn events(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) -> Tally {
    let mut pace = Pace::new(inner.config.event_interval, inner.config.max_error_backoff);
    let mut tally = Tally::default();
    while !stopped(&stop) {
        tally.iterations += 1;
        let span = tracing::info_span!("engine.events", iteration = tally.iterations);
        let went = match guarded(span, route_events(&inner)).await {
            Some(Ok(report)) => {
                tally.routed += report.routed;
                if report.listed >= u64::from(inner.config.event_batch) {
                    Went::Busy
                } else {
                    Went::Idle
                }
            }
            Some(Err(e)) => failed(&mut tally, "events", Some(&e)),
            None => failed(&mut tally, "events", None),
        };
        wait(&mut stop, pace.after(went)).await;
    }
    tally
}

/// Routes up to a batch of the events stores appended with their changes (unrouted)
/// to the jobs of the engine's routes, across every workspace.
pub(crate) async fn route_events(inner: &Inner) -> Result<RouteReport, StoreError> {
    inner
        .router
        .route_pending(Scope::All, inner.config.event_batch)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_goes_again_when_busy_and_backs_off_when_failing() {
        let s = Duration::from_secs;
        let mut pace = Pace::new(s(1), s(5));
        assert_eq!(pace.after(Went::Busy), Duration::ZERO);
        assert_eq!(pace.after(Went::Idle), s(1));
        assert_eq!(pace.after(Went::Failed), s(2));
        assert_eq!(pace.after(Went::Failed), s(4));
        assert_eq!(pace.after(Went::Failed), s(5));
        assert_eq!(pace.after(Went::Failed), s(5));
        assert_eq!(pace.after(Went::Idle), s(1));
        assert_eq!(pace.after(Went::Failed), s(2));
    }
}
