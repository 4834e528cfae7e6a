//! Enrichment orchestrator scenarios: the [`Enricher`] with [`ScriptedProvider`]s and a
//! [`ManualClock`] on a real store.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks. Cases create their own random workspaces.

mod auto;
mod budget;
mod budget_races;
mod social;
mod waterfall;

pub use auto::*;
pub use budget::*;
pub use budget_races::*;
pub use social::*;
pub use waterfall::*;

use std::sync::Arc;

use crate::enrichment::{CallLog, Script, ScriptedProvider};
use crate::store::fixtures::{base, unique_email};
use crm_core::DynStore;
use crm_core::address::EmailAddress;
use crm_core::clock::ManualClock;
use crm_core::enrichment::{ContactQuery, Enricher, LookupKind, Waterfall};

/// A contact query by a fresh, unique email (so it never hits another case's cache).
fn query() -> ContactQuery {
    ContactQuery {
        email: Some(EmailAddress::parse(&unique_email()).expect("valid email")),
        ..Default::default()
    }
}

/// A manual clock at the fixtures' base time.
fn clock() -> ManualClock {
    ManualClock::new(base())
}

/// Providers `names` for `kind`, in order, answering `scripts`, charging `cost` cents
/// of EUR each.
fn chain(
    log: &CallLog,
    kind: LookupKind,
    providers: &[(&'static str, Script)],
    cost: i64,
) -> (Waterfall, Vec<Arc<ScriptedProvider>>) {
    let mut waterfall = Waterfall::new();
    let mut handles = Vec::new();
    for (name, script) in providers {
        let p = Arc::new(
            ScriptedProvider::new(name, log)
                .answering(kind, *script)
                .costing(crate::store::fixtures::eur(cost)),
        );
        waterfall = waterfall.then(kind, p.clone());
        handles.push(p);
    }
    (waterfall, handles)
}

fn enricher(store: &Arc<DynStore>, clock: &ManualClock, waterfall: Waterfall) -> Enricher {
    Enricher::new(store.clone(), Arc::new(clock.clone()), waterfall)
}

/// Expands to one `#[tokio::test]` per enrichment scenario, in a module `enrichment`.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once
/// per test; each case gets the fresh store as `Arc<DynStore>`.
///
/// ```ignore
/// async fn fresh_store() -> my_store::MyStore { my_store::MyStore::for_tests().await }
/// crm_testkit::enrichment_conformance_tests!(fresh_store);
/// // cargo test enrichment::waterfall_asks_in_order_and_stops_at_first_hit
/// ```
#[macro_export]
macro_rules! enrichment_conformance_tests {
    ($make:path) => {
        $crate::__enrichment_cases!($crate::__enrichment_conformance_expand, $make);
    };
}

/// Expands the enrichment case list into tests; called back by [`__enrichment_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __enrichment_conformance_expand {
    ($make:path; $($case:ident)*) => {
        async fn __enrichment_engine_fresh_store() -> impl $crate::__core::Store {
            $make().await
        }

        mod enrichment {
            $(
                #[$crate::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 4,
                    crate = "crm_testkit::tokio"
                )]
                async fn $case() {
                    let store: ::std::sync::Arc<$crate::__core::DynStore> =
                        ::std::sync::Arc::new(super::__enrichment_engine_fresh_store().await);
                    $crate::engine::enrichment::$case(store).await;
                }
            )*
        }
    };
}

/// The one list of enrichment scenarios. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __enrichment_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // waterfall and cache
            waterfall_asks_in_order_and_stops_at_first_hit
            waterfall_moves_past_failures
            cache_serves_until_each_ttl_expires
            social_links_outlive_contact_data
            usage_and_cost_recorded_per_lookup
            rate_limited_provider_is_skipped_until_its_window
            bulk_over_100_needs_confirmation
            // budget
            budget_alerts_fire_once_each
            budget_pauses_at_100_percent_until_next_month
            budget_pause_can_be_turned_off
            concurrent_lookups_fire_each_alert_once
            provider_in_another_currency_is_refused
            concurrent_lookups_never_overshoot_the_budget
            budget_refuses_a_call_it_cannot_pay
            failed_and_skipped_calls_give_their_reservation_back
            // auto-enrichment of new contacts
            auto_enrich_fills_empty_fields_with_provenance
            auto_enrich_off_does_nothing
            auto_enrich_errors_retry_or_dead_letter
        }
    };
}
