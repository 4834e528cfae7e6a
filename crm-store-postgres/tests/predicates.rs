//! The state predicates PostgreSQL repeats in partial indexes are the Rust ones: each
//! index's `WHERE` names exactly the states the model's predicate accepts. A state
//! added to an enum (or moved in or out of a predicate) fails here until a migration
//! updates the index.
#![allow(clippy::panic)]

use crm_core::model::{AnomalyStatus, EnrollmentState, JobStatus, OutboxStatus};
use crm_store_postgres::testing::fresh_store;

/// The quoted literals of an index's predicate, sorted.
async fn predicate_states(store: &crm_store_postgres::PostgresStore, index: &str) -> Vec<String> {
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
    )
    .bind(store.schema())
    .bind(index)
    .fetch_one(store.pool())
    .await
    .unwrap_or_else(|e| panic!("index {index} exists: {e}"));
    let predicate = def
        .split_once(" WHERE ")
        .unwrap_or_else(|| panic!("{index} is a partial index: {def}"))
        .1;
    let mut states: Vec<String> = predicate
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    states.sort();
    states.dedup();
    states
}

fn names<T: Copy>(
    all: &[T],
    keep: impl Fn(T) -> bool,
    name: impl Fn(T) -> &'static str,
) -> Vec<String> {
    let mut v: Vec<String> = all
        .iter()
        .copied()
        .filter(|s| keep(*s))
        .map(|s| name(s).to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn partial_index_predicates_match_the_rust_predicates() {
    let store = fresh_store().await;
    let running = names(EnrollmentState::ALL, |s| s.is_running(), |s| s.as_str());
    for index in ["enrollments_running_key", "enrollments_due_idx"] {
        assert_eq!(
            predicate_states(&store, index).await,
            running,
            "{index}: is_running"
        );
    }
    let open = names(AnomalyStatus::ALL, |s| s.is_open(), |s| s.as_str());
    assert_eq!(
        predicate_states(&store, "anomalies_open_key").await,
        open,
        "is_open"
    );
    let pending = vec![OutboxStatus::Pending.as_str().to_owned()];
    for index in ["outbox_messages_claim_idx", "outbox_messages_claim_ws_idx"] {
        assert_eq!(
            predicate_states(&store, index).await,
            pending,
            "{index}: claimable"
        );
    }
    let queued = vec![JobStatus::Queued.as_str().to_owned()];
    for index in ["jobs_claim_idx", "jobs_claim_ws_idx"] {
        assert_eq!(
            predicate_states(&store, index).await,
            queued,
            "{index}: claimable"
        );
    }
    let running_job = vec![JobStatus::Running.as_str().to_owned()];
    assert_eq!(
        predicate_states(&store, "jobs_lease_idx").await,
        running_job,
        "leased"
    );
}
