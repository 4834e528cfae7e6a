//! The event-log lock that the store's own appends take inside their one statement.

use crm_core::ids::WorkspaceId;
use crm_core::model::NewEvent;
use crm_core::{Clock, SystemClock};
use serde_json::json;

use super::insert_events_in;
use crate::testing::fresh_store;

/// Advisory locks this backend holds.
const HELD: &str = "SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted";

#[tokio::test]
async fn an_append_holds_the_log_lock_until_its_transaction_ends() {
    let store = fresh_store().await;
    let mut tx = store.pool().begin().await.unwrap();
    let before: i64 = sqlx::query_scalar(HELD).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(before, 0);
    let ws = WorkspaceId::new();
    let events: Vec<_> = ["a", "b"]
        .iter()
        .map(|k| {
            NewEvent::new(ws, "contact.created", "c", json!({}), *k, SystemClock.now()).unwrap()
        })
        .collect();
    insert_events_in(&mut tx, &events).await.unwrap();
    let during: i64 = sqlx::query_scalar(HELD).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(during, 1, "the statement took the log lock, once");
    tx.commit().await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let after: i64 = sqlx::query_scalar(HELD)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(after, 0, "released at commit");
}
