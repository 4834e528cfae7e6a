//! The log's read order without a lock on the appends (see [`super::log_order`]):
//! concurrent appends do not wait on each other, and a reader paging with
//! `list_events` gets every committed event once, in position order, without waiting
//! for transactions that cannot add one below its horizon.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crm_core::ids::WorkspaceId;
use crm_core::model::{Event, NewEvent};
use crm_core::store::{EventStore, Scope};
use crm_core::{Clock, SystemClock};
use serde_json::json;
use sqlx::PgConnection;

use super::insert_events_in;
use super::log_order::PATIENCE;
use crate::PostgresStore;
use crate::testing::fresh_store;

/// Long enough for an append or a listing that waits on nothing, far shorter than
/// the open transactions they must not wait for.
const NO_WAIT: Duration = Duration::from_secs(1);

fn event(ws: WorkspaceId, key: &str) -> NewEvent {
    NewEvent::new(
        ws,
        "contact.created",
        "c",
        json!({}),
        key,
        SystemClock.now(),
    )
    .unwrap()
}

/// Appends one event with `key` in the open transaction `conn`, as a store write does.
async fn append_in(conn: &mut PgConnection, ws: WorkspaceId, key: &str) {
    insert_events_in(conn, &[event(ws, key)]).await.unwrap();
}

/// The events of `ws` after `after`, paging (3 at a time) until a page comes back
/// empty; checks that every page goes on from the cursor in position order.
async fn drain(store: &PostgresStore, ws: WorkspaceId, after: &mut i64) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let page = store
            .list_events(Scope::Workspace(ws), *after, 3)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return seen;
        };
        let mut cursor = *after;
        for e in &page {
            assert!(
                e.position > cursor,
                "a page goes on from the cursor, ascending"
            );
            cursor = e.position;
        }
        *after = last.position;
        seen.extend(page);
    }
}

fn keys(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.idempotency_key.as_str()).collect()
}

#[tokio::test]
async fn concurrent_appends_do_not_wait_on_each_other() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut open = store.pool().begin().await.unwrap();
    append_in(&mut open, ws, "open").await;

    let store_write = async {
        let mut tx = store.pool().begin().await.unwrap();
        append_in(&mut tx, ws, "write").await;
        tx.commit().await.unwrap();
    };
    tokio::time::timeout(NO_WAIT, store_write)
        .await
        .expect("a store write's append waits on no other open append");
    tokio::time::timeout(NO_WAIT, store.append_events(&[event(ws, "batch")]))
        .await
        .expect("append_events waits on no other open append")
        .unwrap();
    tokio::time::timeout(
        NO_WAIT,
        store.append_event_with_jobs(&event(ws, "jobs"), &[]),
    )
    .await
    .expect("append_event_with_jobs waits on no other open append")
    .unwrap();
    open.commit().await.unwrap();

    let mut after = 0;
    let all = drain(&store, ws, &mut after).await;
    assert_eq!(keys(&all), ["open", "write", "batch", "jobs"]);
}

#[tokio::test]
async fn an_append_that_commits_last_with_the_lower_position_is_not_skipped() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    store.append_events(&[event(ws, "settled")]).await.unwrap();
    let mut after = 0;
    assert_eq!(keys(&drain(&store, ws, &mut after).await), ["settled"]);
    let mut early = store.pool().begin().await.unwrap();
    append_in(&mut early, ws, "early").await;
    let mut late = store.pool().begin().await.unwrap();
    append_in(&mut late, ws, "late").await;
    late.commit().await.unwrap();

    let started = Instant::now();
    let before = drain(&store, ws, &mut after).await;
    assert!(
        before.is_empty(),
        "the committed event is held back while one below it may still commit: {:?}",
        keys(&before)
    );
    assert!(
        started.elapsed() >= PATIENCE / 2,
        "the listing waited for the append in flight before it gave up"
    );
    early.commit().await.unwrap();
    let seen = drain(&store, ws, &mut after).await;
    assert_eq!(keys(&seen), ["early", "late"], "nothing skipped, in order");
    assert!(seen[0].position < seen[1].position);
}

#[tokio::test]
async fn a_rolled_back_append_is_never_listed_and_holds_nothing_back_once_ended() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut doomed = store.pool().begin().await.unwrap();
    append_in(&mut doomed, ws, "rolled back").await;
    store.append_events(&[event(ws, "kept")]).await.unwrap();
    doomed.rollback().await.unwrap();

    let started = Instant::now();
    let mut after = 0;
    assert_eq!(keys(&drain(&store, ws, &mut after).await), ["kept"]);
    assert!(started.elapsed() < NO_WAIT, "nothing left to wait for");
}

#[tokio::test]
async fn a_listing_waits_for_no_transaction_that_cannot_append_below_it() {
    let store = fresh_store().await;
    let other = fresh_store().await;
    let ws = WorkspaceId::new();
    // Open for the whole test: an append in another schema (the server-wide
    // transaction horizon), and a transaction of this schema that appended nothing.
    let mut elsewhere = other.pool().begin().await.unwrap();
    append_in(&mut elsewhere, ws, "other schema").await;
    let mut idle = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id(), count(*) FROM events")
        .execute(&mut *idle)
        .await
        .unwrap();

    store.append_events(&[event(ws, "mine")]).await.unwrap();
    let started = Instant::now();
    let mut after = 0;
    assert_eq!(keys(&drain(&store, ws, &mut after).await), ["mine"]);
    assert!(
        started.elapsed() < NO_WAIT,
        "read right after the write, without waiting for unrelated transactions"
    );
    elsewhere.rollback().await.unwrap();
    idle.rollback().await.unwrap();
}

/// Writers in parallel transactions, some held open while others commit past them and
/// some rolled back, against one reader paging by cursor all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paging_reader_sees_every_committed_event_once_in_order() {
    const WRITERS: usize = 4;
    const TRANSACTIONS: usize = 30;
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for t in 0..TRANSACTIONS {
                let mut tx = store.pool().begin().await.unwrap();
                let keys: Vec<String> = (0..=(t % 3)).map(|i| format!("w{w}-t{t}-e{i}")).collect();
                let events: Vec<_> = keys.iter().map(|k| event(ws, k)).collect();
                insert_events_in(&mut tx, &events).await.unwrap();
                if (t + w) % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if (t + 2 * w) % 7 == 3 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(keys);
                }
            }
            committed
        }));
    }

    let mut after = 0;
    let mut seen: Vec<Event> = Vec::new();
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        seen.extend(drain(&store, ws, &mut after).await);
    }
    seen.extend(drain(&store, ws, &mut after).await);
    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }

    let mut distinct = HashSet::new();
    for e in &seen {
        assert!(distinct.insert(e.id), "{} listed twice", e.idempotency_key);
        assert!(
            committed.contains(&e.idempotency_key),
            "{} was rolled back",
            e.idempotency_key
        );
    }
    assert_eq!(seen.len(), committed.len(), "every committed event listed");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "listed in position order across pages"
    );
}
