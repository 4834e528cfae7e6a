//! The inbound pipeline against a real store: provider webhooks signed with Resend's
//! real scheme (Standard Webhooks / Svix `v1`), verified and parsed by crm-channels'
//! `ResendWebhook`, deduplicated in the store and applied by the inbound handler to
//! messages the real dispatcher sent.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks. Nothing the engine writes is inserted by hand: contacts and sequences are
//! the host's input, enrollments come from the enroller, messages from the runner, sends
//! (and their `MessageSent` activities) from the dispatcher, and everything after from
//! signed webhooks.

mod cases;
mod harness;

pub use cases::*;

/// Expands to one `#[tokio::test]` per inbound pipeline scenario, in a module named
/// `inbound_pipeline`. `$make` is a path to an `async fn() -> S` where
/// `S: crm_core::Store`, called once per test.
#[macro_export]
macro_rules! inbound_conformance_tests {
    ($make:path) => {
        mod inbound_pipeline {
            #[allow(unused_imports)]
            use super::*;

            $crate::__inbound_case!($make;
                inbound_signed_feedback_records_activities_and_moves_enrollments
                inbound_same_delivery_through_two_pipelines_is_handled_once
                inbound_refuses_bad_signatures_garbage_and_oversized_bodies
                inbound_bounce_spike_from_signed_webhooks_reaches_the_notifier
                inbound_meeting_cancelled_is_recorded_and_reopens_nothing
            );
        }
    };
}

/// One test per case; called by [`inbound_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __inbound_case {
    ($make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let store: ::std::sync::Arc<$crate::__core::DynStore> =
                    ::std::sync::Arc::new($make().await);
                $crate::engine::inbound::$case(store).await;
            }
        )*
    };
}
