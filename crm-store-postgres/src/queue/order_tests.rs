//! The log's read order without a lock on the appends (see [`super::log_order`]):
//! concurrent appends do not wait on each other, and a reader paging with
//! `list_events` never skips an event that commits late nor goes back.

use std::collections::HashSet;
use std::time::Duration;

use crm_core::ids::WorkspaceId;
use crm_core::model::{Event, NewEvent};
use crm_core::store::{EventStore, Scope};
use crm_core::{Clock, SystemClock};
use serde_json::json;
use sqlx::PgConnection;

use super::insert_events_in;
use crate::PostgresStore;
use crate::testing::fresh_store;

/// Long enough for an append that waits on nothing, far shorter than the open
/// transaction it must not wait for.
const NO_WAIT: Duration = Duration::from_secs(3);

/// How long a reader keeps paging for events it knows were committed.
const PATIENCE: Duration = Duration::from_secs(20);

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

/// The events of `ws` after `after`, paging until a page comes back empty.
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
        *after = last.position;
        seen.extend(page);
    }
}

/// The next `want` events of `ws` after `after`, paging for up to [`PATIENCE`]: a
/// transaction of another test, anywhere on the server, may hold the horizon back for
/// a while.
async fn read(store: &PostgresStore, ws: WorkspaceId, after: &mut i64, want: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while seen.len() < want && tokio::time::Instant::now() < deadline {
        seen.extend(drain(store, ws, after).await);
    }
    seen
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
    let all = read(&store, ws, &mut after, 4).await;
    assert_eq!(keys(&all), ["open", "write", "batch", "jobs"]);
}

#[tokio::test]
async fn an_append_that_commits_last_with_the_lower_position_is_not_skipped() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut early = store.pool().begin().await.unwrap();
    append_in(&mut early, ws, "early").await;
    let mut late = store.pool().begin().await.unwrap();
    append_in(&mut late, ws, "late").await;
    late.commit().await.unwrap();

    let mut after = 0;
    let before = drain(&store, ws, &mut after).await;
    assert!(
        before.is_empty(),
        "the committed event is held back while the one before it may still commit: {:?}",
        keys(&before)
    );
    early.commit().await.unwrap();
    let seen = read(&store, ws, &mut after, 2).await;
    assert_eq!(
        keys(&seen),
        ["early", "late"],
        "nothing skipped, in log order"
    );
    assert!(seen[0].position < seen[1].position);
}

#[tokio::test]
async fn an_append_that_commits_last_with_the_higher_transaction_is_listed_after() {
    // The transaction that takes its id first draws the higher position and commits
    // first: a listing by position behind a transaction-id horizon would hand out its
    // event and then never the other, whose position is lower.
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut first = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *first)
        .await
        .unwrap();
    let mut second = store.pool().begin().await.unwrap();
    append_in(&mut second, ws, "lower position").await;
    append_in(&mut first, ws, "higher position").await;
    first.commit().await.unwrap();

    // Usually lists the committed event; an older transaction elsewhere on the server
    // may still hold it back.
    let mut after = 0;
    let mut seen = drain(&store, ws, &mut after).await;
    assert!(
        keys(&seen).iter().all(|k| *k == "higher position"),
        "{:?}",
        keys(&seen)
    );
    second.commit().await.unwrap();
    let want = 2 - seen.len();
    seen.extend(read(&store, ws, &mut after, want).await);
    assert_eq!(
        keys(&seen),
        ["higher position", "lower position"],
        "the late event comes after the cursor, though its position is below it"
    );
    assert!(seen[1].position < seen[0].position);
}

/// `(tx_id, position)` of the events at `positions`, in that order.
async fn log_keys(store: &PostgresStore, positions: &[i64]) -> Vec<(u64, i64)> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.tx_id::text, e.position FROM unnest($1::int8[]) WITH ORDINALITY AS p(pos, n)
         JOIN events e ON e.position = p.pos ORDER BY p.n",
    )
    .bind(positions)
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(tx, pos)| (tx.parse().unwrap(), pos))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paging_reader_sees_every_event_of_concurrent_writers_once_in_order() {
    const WRITERS: usize = 4;
    const TRANSACTIONS: usize = 30;
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for t in 0..TRANSACTIONS {
                let mut tx = store.pool().begin().await.unwrap();
                let events: Vec<_> = (0..=(t % 3))
                    .map(|i| event(ws, &format!("w{w}-t{t}-e{i}")))
                    .collect();
                insert_events_in(&mut tx, &events).await.unwrap();
                // Hold some transactions open while others commit past them.
                if (t + w) % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    let expected: usize = WRITERS * (0..TRANSACTIONS).map(|t| t % 3 + 1).sum::<usize>();

    let mut after = 0;
    let mut seen: Vec<Event> = Vec::new();
    let mut writing = true;
    while writing || seen.len() < expected {
        writing = !writers.iter().all(tokio::task::JoinHandle::is_finished);
        let page = store
            .list_events(Scope::Workspace(ws), after, 7)
            .await
            .unwrap();
        if let Some(last) = page.last() {
            after = last.position;
        } else if !writing {
            break;
        }
        seen.extend(page);
    }
    for writer in writers {
        writer.await.unwrap();
    }

    let mut distinct = HashSet::new();
    for e in &seen {
        assert!(distinct.insert(e.id), "{} listed twice", e.idempotency_key);
    }
    assert_eq!(seen.len(), expected, "every event listed");
    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    let order = log_keys(&store, &positions).await;
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "the reader never went back in (tx_id, position) order"
    );
    for w in 0..WRITERS {
        let mine: Vec<_> = seen
            .iter()
            .map(|e| e.idempotency_key.as_str())
            .filter(|k| k.starts_with(&format!("w{w}-")))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_by_key(|k| {
            let mut parts = k
                .split('-')
                .skip(1)
                .map(|p| p[1..].parse::<usize>().unwrap());
            (parts.next(), parts.next())
        });
        assert_eq!(
            mine, sorted,
            "one writer's events come in the order it wrote them"
        );
    }
}

#[tokio::test]
async fn the_migration_orders_the_events_already_in_the_log_first() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    // The log as migration 0011 left it.
    sqlx::raw_sql(
        "DROP INDEX events_log_order_idx; DROP INDEX events_workspace_log_order_idx;
         ALTER TABLE events DROP COLUMN tx_id;
         CREATE INDEX events_workspace_position_idx ON events (workspace_id, position);",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let old = store
        .append_events(&[event(ws, "old 1"), event(ws, "old 2")])
        .await
        .unwrap();
    sqlx::raw_sql(include_str!("../../migrations/0014_event_tx_order.sql"))
        .execute(store.pool())
        .await
        .unwrap();

    // New events, one of them from a transaction that commits after another's.
    let mut open = store.pool().begin().await.unwrap();
    append_in(&mut open, ws, "new 1").await;
    store.append_events(&[event(ws, "new 2")]).await.unwrap();
    open.commit().await.unwrap();

    let mut after = 0;
    let all = read(&store, ws, &mut after, 4).await;
    assert_eq!(keys(&all), ["old 1", "old 2", "new 1", "new 2"]);
    let mut after = old[0].value.position;
    let resumed = read(&store, ws, &mut after, 3).await;
    assert_eq!(
        keys(&resumed),
        ["old 2", "new 1", "new 2"],
        "a cursor taken before the upgrade resumes where it was"
    );
}
