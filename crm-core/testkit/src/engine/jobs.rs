//! Durable jobs, events, periodic jobs and anomaly detection against a real store.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks. Workers run on the Tokio runtime with a [`ManualClock`]; they poll every
//! few milliseconds, so every case takes well under a few seconds on PostgreSQL.

mod anomalies;
mod events;
mod panics;
mod routing;
mod worker;

pub use anomalies::*;
pub use events::*;
pub use panics::*;
pub use routing::*;
pub use worker::*;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::store::fixtures::{base, ok};
use crm_core::clock::{Clock, ManualClock};
use crm_core::ids::{JobId, WorkspaceId};
use crm_core::jobs::{Jitter, JobContext, JobError, JobHandler, WorkerConfig};
use crm_core::model::Job;
use crm_core::store::{Page, Scope};
use crm_core::{DynStore, model::JobStatus};

/// Expands to one `#[tokio::test]` per jobs, events and anomaly scenario, in a module
/// named `jobs` (so `cargo test jobs` selects them).
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once
/// per test; the cases run on `Arc<DynStore>`, as hosts hold it. The invoking crate
/// must depend on `crm-core` (named `crm_testkit`).
#[macro_export]
macro_rules! jobs_conformance_tests {
    ($make:path) => {
        $crate::__jobs_cases!($crate::__jobs_conformance_expand, $make);
    };
}

/// Expands the case list into tests; called back by [`__jobs_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __jobs_conformance_expand {
    ($make:path; $($case:ident)*) => {
        mod jobs {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    let store: ::std::sync::Arc<$crate::__core::DynStore> =
                        ::std::sync::Arc::new($make().await);
                    $crate::engine::jobs::$case(store).await;
                }
            )*
        }
    };
}

/// The one list of jobs scenarios. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __jobs_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // worker
            worker_runs_each_job_exactly_once
            retryable_failures_back_off_then_dead_letter
            worker_panicking_handler_is_retried_then_dead_lettered
            permanent_failure_dead_letters_at_once
            unregistered_kinds_are_never_claimed
            reaper_returns_expired_leases_and_the_job_runs_again
            graceful_shutdown_finishes_in_flight_and_releases_the_rest
            a_claimed_batch_runs_concurrently_up_to_the_concurrency
            // events and periodic jobs
            publish_enqueues_mapped_jobs_once
            router_routes_store_appended_events_once
            schedulers_enqueue_each_instant_once
            periodic_expiry_expires_approvals_and_cancels_messages
            // anomalies
            failure_rate_raises_one_error_deduplicated_until_resolved
            low_confidence_raises_a_warning
            bounce_spike_raises_an_error_against_the_baseline
            quota_exhausted_raises_a_warning
            anomalies_are_acknowledged_and_resolved
            channel_paused_only_by_open_error_send_health_anomalies
            anomaly_scan_job_scans_the_listed_workspaces
        }
    };
}

/// What a [`Recorder`] answers.
#[derive(Debug, Clone)]
enum Behaviour {
    Succeed,
    Fail(JobError),
    /// Signals `started`, then waits for `proceed` before succeeding.
    Block {
        started: Arc<Notify>,
        proceed: Arc<Notify>,
    },
}

/// A handler that counts its runs per job id.
#[derive(Debug)]
struct Recorder {
    runs: Mutex<HashMap<JobId, u32>>,
    behaviour: Behaviour,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            runs: Mutex::new(HashMap::new()),
            behaviour,
        })
    }

    fn runs(&self) -> HashMap<JobId, u32> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl JobHandler for Recorder {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        *self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(job.id)
            .or_default() += 1;
        match &self.behaviour {
            Behaviour::Succeed => Ok(()),
            Behaviour::Fail(err) => Err(err.clone()),
            Behaviour::Block { started, proceed } => {
                started.notify_one();
                proceed.notified().await;
                Ok(())
            }
        }
    }
}

/// A manual clock at [`base`], and the same clock as `Arc<dyn Clock>`.
fn clock() -> (ManualClock, Arc<dyn Clock>) {
    let clock = ManualClock::new(base());
    (clock.clone(), Arc::new(clock))
}

/// A fast-polling worker config scoped to `ws`, without jitter.
fn test_config(ws: WorkspaceId) -> WorkerConfig {
    WorkerConfig::default()
        .with_name("engine-test")
        .with_concurrency(4)
        .with_batch_size(10)
        .with_idle_poll(Duration::from_millis(5))
        .with_reap_interval(Duration::from_millis(10))
        .with_scope(Scope::Workspace(ws))
        .with_jitter(Jitter::None)
}

/// Every job of `ws` with `status` (at most 1000).
async fn jobs_with(store: &DynStore, ws: WorkspaceId, status: Option<JobStatus>) -> Vec<Job> {
    ok(
        store.list_jobs(ws, status, Page::first(1000)).await,
        "list_jobs",
    )
}

/// Polls `check` every 10 ms until it holds, failing with `what` after 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
