//! Plans of the router's listing, on a log where routed events far outnumber the
//! backlog (the steady state).

use crate::testing::fresh_store;

use super::{UNROUTED_ALL, UNROUTED_WORKSPACE};

/// 100 tenants with 1000 routed events each, and 20 unrouted events in one of them.
const POPULATE: &str = "
    INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
        occurred_at, routed)
    SELECT w, gen_random_uuid(), 'contact.updated', 'x', '{}', 'k' || n, now(), true
    FROM (SELECT gen_random_uuid() AS w FROM generate_series(1, 100)) ws,
         generate_series(1, 1000) n;
    INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
        occurred_at)
    SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(), 'contact.created',
        'x', '{}', 'u' || n, now()
    FROM generate_series(1, 20) n;
    ANALYZE events;";

async fn plan(sql: &str, workspace: Option<uuid::Uuid>) -> String {
    let store = fresh_store().await;
    sqlx::raw_sql(POPULATE).execute(store.pool()).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
        .bind(workspace)
        .bind(100_i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn the_unrouted_listing_reads_the_partial_index() {
    let all = plan(UNROUTED_ALL, None).await;
    assert!(all.contains("events_unrouted_idx"), "{all}");
    let one = plan(UNROUTED_WORKSPACE, Some(uuid::Uuid::from_u128(1))).await;
    assert!(one.contains("events_unrouted_idx"), "{one}");
}
