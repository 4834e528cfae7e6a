//! Approval scenarios: policies ([`ManualApproval`](crm_core::ManualApproval),
//! [`GraduatedRules`](crm_core::outreach::approvals::GraduatedRules)) and the
//! [`ApprovalInbox`](crm_core::outreach::approvals::ApprovalInbox) on a real store.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks. Cases create their own random workspaces; the expiry case, which acts on
//! every workspace, works in a far-past era of its own.

pub mod fixtures;

mod inbox;
mod lifecycle;
mod policy;

pub use inbox::*;
pub use lifecycle::*;
pub use policy::*;

/// Expands to one `#[tokio::test]` per approval scenario, in a module `approvals`.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once
/// per test; each case gets the fresh store as `Arc<DynStore>`, as engines hold it.
///
/// ```ignore
/// async fn fresh_store() -> my_store::MyStore { my_store::MyStore::for_tests().await }
/// crm_testkit::approval_conformance_tests!(fresh_store);
/// // cargo test approvals::approve_releases_the_message
/// ```
#[macro_export]
macro_rules! approval_conformance_tests {
    ($make:path) => {
        $crate::__approval_cases!($crate::__approval_conformance_expand, $make);
    };
}

/// Expands the approval case list into tests; called back by [`__approval_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __approval_conformance_expand {
    ($make:path; $($case:ident)*) => {
        async fn __approval_engine_fresh_store() -> impl $crate::__core::Store {
            $make().await
        }

        mod approvals {
            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    let store: ::std::sync::Arc<$crate::__core::DynStore> =
                        ::std::sync::Arc::new(super::__approval_engine_fresh_store().await);
                    $crate::engine::approvals::$case(store).await;
                }
            )*
        }
    };
}

/// The one list of approval scenarios. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __approval_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // policies
            manual_policy_always_requires_a_human
            graduated_without_enabled_rule_is_manual
            graduated_step_rule
            graduated_confidence_rule
            graduated_streak_rule
            graduated_step_requiring_approval_always_asks
            graduated_daily_cap_stops_and_resets_next_local_day
            graduated_daily_cap_holds_under_concurrency
            preview_lists_matching_pending_items_and_changes_nothing
            // decisions
            approve_releases_the_message
            reject_cancels_the_message_with_its_reason
            edit_and_approve_sends_the_edited_body_and_breaks_the_streak
            batch_approve_by_unauthorised_user_changes_nothing
            batch_approve_returns_a_result_per_item
            deciding_twice_is_already_decided
            concurrent_approve_and_reject_one_wins
            // lifecycle
            expiry_marks_items_expired_and_cancels_messages
            inbox_tenant_isolation
            notifier_called_for_new_items_and_failure_loses_nothing
            decisions_are_audited_without_message_text
        }
    };
}
