//! The store conformance suite: the executable form of the [`Store`](crm_core::Store)
//! contract.
//!
//! Each case is a `pub async fn name(store: &DynStore)` that panics with the rule it
//! checks when the store breaks it. Cases create their own random workspaces, and cases
//! acting on [`Scope::All`](crm_core::store::Scope::All) work in a far-past era of their
//! own, so cases may share a store and run in parallel; still, give each case a fresh
//! store (the [`store_conformance_tests!`](crate::store_conformance_tests) macro does).
//!
//! Concurrency cases use [`fixtures::race`], which needs a multi-thread Tokio runtime to
//! run truly in parallel.

pub mod fixtures;

mod api_keys;
mod approval_decisions;
mod approvals;
mod batch_reads;
mod claim_races;
mod clock_skew;
mod compliance;
mod concurrency;
mod contact_lookup;
mod coordination;
mod crm;
mod deals;
mod divergences;
mod enrichment;
mod enrichment_budget;
mod enrollment_page;
mod event_jobs;
mod event_routing;
mod events;
mod events_emitted;
mod events_emitted_send;
mod intake;
mod intake_batch;
mod intake_complete;
mod job_lifecycle;
mod jobs;
mod jobs_batch;
mod lifecycle;
mod limits;
mod outbox;
mod outbox_batch;
mod outbox_hold;
mod outbox_leases;
mod outbox_send;
mod outreach;
mod scoring;
mod send_gate;
mod sequences;
mod touches;
mod wake;
mod webhooks;
mod workspaces;

pub use api_keys::*;
pub use approval_decisions::*;
pub use approvals::*;
pub use batch_reads::*;
pub use claim_races::*;
pub use clock_skew::*;
pub use compliance::*;
pub use concurrency::*;
pub use contact_lookup::*;
pub use coordination::*;
pub use crm::*;
pub use deals::*;
pub use divergences::*;
pub use enrichment::*;
pub use enrichment_budget::*;
pub use enrollment_page::*;
pub use event_jobs::*;
pub use event_routing::*;
pub use events::*;
pub use events_emitted::*;
pub use events_emitted_send::*;
pub use intake::*;
pub use intake_batch::*;
pub use intake_complete::*;
pub use job_lifecycle::*;
pub use jobs::*;
pub use jobs_batch::*;
pub use lifecycle::*;
pub use limits::*;
pub use outbox::*;
pub use outbox_batch::*;
pub use outbox_hold::*;
pub use outbox_leases::*;
pub use outbox_send::*;
pub use outreach::*;
pub use scoring::*;
pub use send_gate::*;
pub use sequences::*;
pub use touches::*;
pub use wake::*;
pub use webhooks::*;
pub use workspaces::*;

/// Expands to one `#[tokio::test]` per store conformance case.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`; it is called
/// once per test, so it should return a fresh store (the suite writes to it). The tests
/// run on a multi-thread runtime. Every case takes the store as `&DynStore`, as the
/// engines hold it, so one pass covers what a host sees.
///
/// The invoking crate must depend on `crm-testkit` (named `crm_testkit`).
///
/// ```ignore
/// // tests/conformance.rs of a store crate
/// async fn fresh_store() -> my_store::MyStore {
///     my_store::MyStore::connect_for_tests().await
/// }
///
/// crm_testkit::store_conformance_tests!(fresh_store);
/// // cargo test contact_round_trip  -> runs `contact_round_trip`
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::__store_cases!($crate::__store_conformance_expand, $make);
    };
}

/// Expands the case list into tests; called back by [`__store_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_expand {
    ($make:path; $($case:ident)*) => {
        async fn __conformance_fresh_store() -> impl $crate::__core::Store {
            $make().await
        }

        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 4,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let store = __conformance_fresh_store().await;
                $crate::store::$case(&store).await;
            }
        )*
    };
}

/// The one list of store conformance cases. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // wake-ups
            wake_signals_claimable_work_only
            // crm: contacts and accounts
            contact_round_trip
            contact_insert_validates
            contact_insert_conflicts
            contact_account_must_exist_in_workspace
            contact_update_compare_and_set
            contact_update_keeps_insert_rules
            contact_list_pagination
            contact_tenant_isolation
            account_round_trip
            account_insert_rules
            account_update_compare_and_set
            account_list_and_tenant_isolation
            // deals: pipelines, deals, activities
            pipeline_round_trip_and_list
            pipeline_insert_rules
            deal_round_trip_and_list
            deal_insert_checks_references
            deal_update_compare_and_set
            deal_tenant_isolation
            activity_round_trip_newest_first
            activity_filters_and_count
            activity_insert_rules
            activity_tenant_isolation
            // compliance: consent, suppressions, audit
            consent_latest_wins
            consent_references_and_isolation
            suppression_idempotent_and_normalised
            suppression_find_channel_and_all_channels
            suppression_remove_exact_entry
            batched_gate_reads_answer_each_key_in_order
            audit_append_and_list
            // intake
            intake_round_trip_and_rules
            intake_fingerprint_dedup
            intake_update_and_list
            intake_tenant_isolation
            intake_batch_dedups_by_fingerprint
            intake_batch_is_all_or_nothing
            field_provenance_round_trip_and_isolation
            account_contacts_are_scoped
            concurrent_intake_batches_keep_one_pending
            intake_batch_keeps_awkward_text_exactly
            complete_intake_writes_everything
            complete_intake_is_all_or_nothing
            // sequences and enrollments
            sequence_round_trip_and_update
            sequence_tenant_isolation
            enrollment_round_trip_and_references
            enrollment_one_running_per_contact_and_sequence
            due_enrollments_order
            enrollment_list_filters
            // outbox
            outbox_enqueue_round_trip_and_idempotency
            outbox_enqueue_validates
            outbox_list_by_status
            outbox_claim_order_and_lease
            outbox_mark_sent_records_activity_atomically
            outbox_reschedule_counts_or_gives_back_attempt
            outbox_finish_statuses
            outbox_lease_checks_use_the_token
            outbox_reap_expired_leases
            outbox_update_rules
            outbox_claim_and_reap_across_all_workspaces
            outbox_tenant_isolation
            // approvals
            approval_one_item_per_message
            approval_update_and_list
            approval_expire_only_due_pending
            approval_expire_across_all_workspaces
            approval_rules_round_trip
            approval_tenant_isolation
            // jobs
            job_enqueue_round_trip_and_idempotency
            job_list_by_status
            job_claim_order_kinds_and_lease
            claims_validate_their_input
            job_complete_is_lease_checked
            job_retry_until_dead
            job_dead_letter
            job_release_gives_attempt_back
            job_stale_token_refused_after_reclaim
            job_reap_expired_leases
            job_claim_and_reap_across_all_workspaces
            job_tenant_isolation
            // jobs: bulk enqueue and batched completion
            job_enqueue_batch_keys_optional_and_idempotent
            job_enqueue_batch_is_all_or_none
            job_complete_batch_is_lease_checked_per_job
            job_complete_batch_refuses_a_reclaimed_job
            // events
            event_append_batch_in_order_and_all_or_none
            event_append_round_trip
            event_append_is_idempotent
            event_tenant_isolation_and_scope_all
            // events: routing, and the events every state change appends
            unrouted_events_are_listed_oldest_first
            marking_events_routed_enqueues_their_jobs_once
            marking_events_routed_checks_its_jobs
            crm_changes_append_their_events
            enrollment_changes_append_their_events
            finish_outbox_records_the_failure_and_nudges_the_enrollment
            finish_outbox_leaves_other_enrollments_alone
            sends_and_cancels_append_their_events
            approval_changes_append_their_events
            anomaly_changes_append_their_events
            score_changes_append_their_events
            // coordination: quotas, leases, anomalies
            quota_consume_until_exhausted
            quota_keys_are_independent
            lease_acquire_refuse_and_take_over
            lease_same_holder_keeps_token
            lease_validation_and_isolation
            anomaly_dedup_while_open
            anomaly_update_and_list
            anomaly_tenant_isolation
            // races
            concurrent_job_claims_never_overlap
            concurrent_outbox_claims_never_overlap
            concurrent_quota_never_overdraws
            concurrent_lease_acquire_single_winner
            concurrent_event_append_creates_once
            concurrent_intake_keeps_one_pending
            concurrent_enrollment_single_running
            concurrent_updates_one_version_wins
            concurrent_idempotent_enqueues_create_once
            concurrent_anomaly_raise_creates_once
            // outreach: contact lookup by channel address
            contact_find_by_address_per_channel
            contact_find_by_address_tenant_isolation
            // outreach: sequence versions, due workspaces, enrollment change-sets
            sequence_versions_stay_readable
            due_workspaces_order_and_limit
            advance_enrollment_enqueues_with_compare_and_set
            advance_enrollment_cancels_only_its_queued_messages
            advance_enrollment_refuses_bad_change_sets
            // outreach: the runner's page of due enrollments
            advance_enrollments_applies_each_change_on_its_own
            get_contacts_answers_each_id_in_order
            count_day_touches_matches_the_single_counts
            // outreach: enrollment lifecycle columns
            lifecycle_sequence_status_and_policy_round_trip
            lifecycle_enrollment_fields_round_trip
            lifecycle_enrollment_fields_clear
            // outreach: the send path
            sent_record_advances_fresh_enrollment
            sent_record_skips_stale_enrollment
            mark_outbox_sent_many_fences_each_mark
            insert_approvals_batch
            outbox_find_by_provider_id
            outbox_hold_for_approval
            outbox_hold_for_approval_with_existing_item
            outbox_hold_for_approval_is_atomic
            // outreach: the send gate
            send_gate_answers_each_start_in_order
            send_gate_unsubscribes_report_cancelled_and_in_flight
            send_gate_unsubscribes_give_back_the_units_of_what_they_cancel
            send_gate_concurrent_starts_never_pass_the_cap
            // outreach: touches for the daily touch limit
            touches_count_queued_messages_due_before_the_bound
            // outreach: approvals
            approval_find_for_outbox
            approval_clean_streak_newest_first
            approval_decide_atomically
            // outreach: events with the jobs they trigger
            event_append_with_jobs_enqueues_once
            event_append_with_jobs_validates_every_job
            concurrent_event_append_with_jobs_enqueues_once
            // enrichment: cache, usage and monthly spend
            enrichment_cache_round_trip_and_overwrite
            enrichment_tenant_isolation
            enrichment_usage_accumulates_spend_per_month
            concurrent_enrichment_spend_never_double_counts
            // enrichment: spend reservations against the monthly budget
            concurrent_enrichment_reservations_never_exceed_the_cap
            settling_enrichment_spend_lower_releases_the_difference
            released_enrichment_spend_is_given_back
            expired_enrichment_reservations_stop_counting
            // scoring: models, scores, inputs
            scoring_model_versions_compare_and_set
            contact_scores_batch_upsert
            contact_scores_unchanged_are_not_rewritten
            contact_scores_with_events_are_atomic
            score_override_survives_recompute
            scores_list_by_tier_pages
            scores_tenant_isolation
            scoring_inputs_match_the_reference
            concurrent_model_saves_one_version_wins
            // clock skew: leases and claims between processes with skewed clocks
            lease_is_exclusive_across_skewed_clocks
            outbox_claim_is_exclusive_across_skewed_clocks
            job_claim_is_exclusive_across_skewed_clocks
            // claim races: moved from the per-store test files
            concurrent_kind_claims_with_completions_never_overlap
            concurrent_lease_race_after_release_passes_it_on
            concurrent_mixed_key_appends_create_each_once_in_order
            // divergences: behaviour the two stores used to disagree on
            nul_in_text_or_json_is_invalid_everywhere
            email_identity_folds_unicode_and_idn
            concurrent_score_writers_emit_one_tier_change
            suppression_add_racing_remove_never_fails
            quota_exhausted_reports_the_deciding_total
            sub_microsecond_times_round_trip_alike
            unknown_references_name_the_same_entity
            // limits: text lengths and JSON numbers and nesting, alike on every store
            text_at_the_limit_round_trips_and_past_it_is_invalid
            oversized_profile_link_is_invalid_at_intake
            unreadable_json_is_refused_everywhere
            json_at_the_limits_round_trips_exactly
            // inbound webhook deliveries: durable deduplication
            webhook_delivery_recorded_once_per_key
            webhook_delivery_expired_claim_is_taken_over
            webhook_delivery_concurrent_duplicates_have_one_winner
            webhook_delivery_purge_keeps_recent
            // workspaces: the registry and its settings
            workspace_round_trip_and_insert_rules
            workspace_update_compare_and_set
            workspace_list_pages_by_id
            concurrent_workspace_updates_one_version_wins
            // API keys: hashed tokens, a global prefix, scoped revoke and list
            api_key_round_trip_and_insert_rules
            api_key_last_use_only_moves_forward
            api_key_revocation_is_idempotent_and_scoped
            api_key_list_pages_by_workspace
            concurrent_api_key_inserts_one_prefix_wins
        }
    };
}
