//! The one send rule, end to end: the real runner and dispatcher on a manual clock
//! across time zones, with send windows, a binding daily cap and a touch limit.
//!
//! - [`send_rule_forecast_is_exact_under_a_binding_cap`]: ten days, hour by hour, thirty
//!   contacts in six zones; every (enrollment, step) goes out at the instant the
//!   forecast (made at the start, with a one-hour tick) gave, and nothing else goes.
//! - [`send_rule_forecast_is_exact_with_parallel_sequences`]: the same with contacts
//!   in two sequences at once, which holds through the dispatcher's touch check at
//!   send time (`begin_sends`).
//! - [`send_rule_holds_under_random_zones_windows_caps_and_approvals`]: sixteen random
//!   scenarios (zones, windows with minutes, caps, touch limits, approvals decided at
//!   random times, random clock steps); no send is ever outside its step's window, over
//!   the contact's touch limit or over the workspace's daily cap.
//!
//! Each case takes a fresh store ([`send_rule_conformance_tests!`](crate::send_rule_conformance_tests)
//! gives one): the runner and the dispatcher work on every workspace of the store.

mod forecast_exact;
mod properties;
mod rig;

pub use forecast_exact::*;
pub use properties::*;

/// Expands to one `#[tokio::test]` (multi-thread) per send-rule scenario.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once per
/// test; it should return a fresh store.
#[macro_export]
macro_rules! send_rule_conformance_tests {
    ($make:path) => {
        $crate::__send_rule_conformance_expand!($make;
            send_rule_forecast_is_exact_under_a_binding_cap
            send_rule_holds_under_random_zones_windows_caps_and_approvals
            send_rule_forecast_is_exact_with_parallel_sequences
        );
    };
}

/// Expands the case list into tests; called by [`send_rule_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __send_rule_conformance_expand {
    ($make:path; $($case:ident)*) => {
        async fn __send_rule_fresh_store() -> ::std::sync::Arc<$crate::__core::DynStore> {
            ::std::sync::Arc::new($make().await)
        }

        mod send_rule {
            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 2,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    $crate::engine::send_rule::$case(super::__send_rule_fresh_store().await)
                        .await;
                }
            )*
        }
    };
}
