//! Plans of the runner's hot queries, on a populated table.

use crm_core::{Clock, SystemClock};

use crate::testing::fresh_store;

/// 200 tenants with 50 contacts each; every contact has one running enrollment (about
/// half of them due) and one completed one.
const POPULATE: &str = "
    INSERT INTO sequences (workspace_id, id, name, steps, in_flight_policy, created_at,
        updated_at, version)
    SELECT w, w, 'S', '[]', 'keep_version', now(), now(), 1
    FROM (SELECT gen_random_uuid() AS w FROM generate_series(1, 200)) ws;
    INSERT INTO contacts (workspace_id, id, first_name, last_name, custom_fields,
        created_at, updated_at, version)
    SELECT s.workspace_id, gen_random_uuid(), 'A', 'B', '{}', now(), now(), 1
    FROM sequences s, generate_series(1, 50);
    INSERT INTO enrollments (workspace_id, id, sequence_id, sequence_version, contact_id,
        state, current_step, next_run_at, created_at, updated_at, version)
    SELECT c.workspace_id, gen_random_uuid(), c.workspace_id, 1, c.id, 'active', 0,
        now() + (random() * 2 - 1) * interval '1 day', now(), now(), 1
    FROM contacts c
    UNION ALL
    SELECT c.workspace_id, gen_random_uuid(), c.workspace_id, 1, c.id, 'completed', 1,
        NULL, now(), now(), 1
    FROM contacts c;
    ANALYZE sequences, contacts, enrollments;";

#[tokio::test]
async fn due_workspaces_read_the_due_index() {
    let store = fresh_store().await;
    sqlx::raw_sql(POPULATE).execute(store.pool()).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(concat!("EXPLAIN ", due_workspaces_sql!()))
        .bind(SystemClock.now())
        .bind(100_i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("enrollments_due_idx"), "{plan}");
}
