//! Sequence-runner scenarios on a real store: enrolling with conflict checks, the
//! runner's tick (windows, rendering, touch limit, crash re-runs, leases, two runners,
//! parallelism), inbound events, sequence edits and the send forecast.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that builds the services it
//! needs ([`World`]) in fresh workspaces of its own and panics with the rule it checks.
//! Cases tick the runner across every workspace of the store, so give each case a fresh
//! store (the [`runner_conformance_tests!`](crate::runner_conformance_tests) macro
//! does). Time comes from fixed instants, never the wall clock; the race cases need a
//! multi-thread runtime.

mod enroll_cases;
mod inbound_cases;
mod lifecycle_cases;
mod plan_cases;
mod race_cases;
mod settings_cases;
mod tick_cases;
pub mod world;

pub use enroll_cases::*;
pub use inbound_cases::*;
pub use lifecycle_cases::*;
pub use plan_cases::*;
pub use race_cases::*;
pub use settings_cases::*;
pub use tick_cases::*;
pub use world::World;

/// Expands to one `#[tokio::test]` per runner scenario, in a module `runner`.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once per
/// test; the case gets it as `Arc<DynStore>`. The invoking crate must depend on
/// `crm-core` (named `crm_testkit`).
///
/// ```ignore
/// async fn fresh_store() -> my_store::MyStore { my_store::MyStore::for_tests().await }
/// crm_testkit::runner_conformance_tests!(fresh_store);
/// // cargo test runner::  -> runs every runner scenario
/// ```
#[macro_export]
macro_rules! runner_conformance_tests {
    ($make:path) => {
        $crate::__runner_cases!($crate::__runner_conformance_expand, $make);
    };
}

/// Expands the case list into tests; called back by [`__runner_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __runner_conformance_expand {
    ($make:path; $($case:ident)*) => {
        async fn __runner_fresh_store() -> ::std::sync::Arc<$crate::__core::DynStore> {
            ::std::sync::Arc::new($make().await)
        }

        mod runner {
            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    $crate::engine::runner::$case(super::__runner_fresh_store().await)
                        .await;
                }
            )*
        }
    };
}

/// The one list of runner scenarios. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __runner_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // enrolling
            enroll_conflicts_are_listed_together
            enroll_touch_limit_follows_the_local_day
            enroll_parallel_sequence_policy
            // the tick
            tick_starts_renders_and_enqueues_each_step_once
            tick_postpones_outside_the_window
            tick_missing_merge_field_parks_the_enrollment
            tick_rerun_after_crash_creates_no_duplicate
            tick_touch_limit_postpones_to_the_next_local_day
            tick_skips_a_workspace_leased_elsewhere
            // runners racing
            two_runners_never_share_a_workspace
            runner_parallelism_is_respected
            // inbound events
            reply_stops_the_enrollment_and_cancels_queued
            bounce_suppresses_the_address
            unsubscribe_suppresses_and_withdraws_consent
            out_of_office_pauses_and_resumes
            account_level_stop
            meeting_booked_follows_the_policy
            // lifecycle: unsendable steps, completion, pause, resume, stop, archive
            lifecycle_rejected_step_is_skipped_and_the_next_one_sent
            lifecycle_dead_lettered_step_fails_the_enrollment
            lifecycle_last_step_completes_and_allows_re_enrollment
            lifecycle_pause_resume_and_stop_an_enrollment
            lifecycle_paused_sequence_holds_and_archive_stops
            // definitions and forecast
            sequence_edit_keeps_or_migrates
            forecast_lists_planned_sends_and_writes_nothing
            // settings that cannot be read: fail closed
            tick_skips_a_workspace_whose_settings_fail
            enroll_returns_the_settings_error
        }
    };
}
