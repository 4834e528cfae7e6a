//! The log order a paging reader of [`EventStore::list_events`] relies on, under
//! concurrent appends.
//!
//! [`EventStore::list_events`]: crm_core::store::EventStore::list_events

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::Event;
use crm_core::store::Scope;

use super::fixtures::{new_event, ok, race, unique};

/// Appenders racing the reader, and the events each appends, one append at a time.
const APPENDERS: usize = 4;
const APPENDS: usize = 25;

/// How long the reader keeps paging after the appenders are done: a store may hold
/// committed events back for a while (see the trait's "Log order").
const PATIENCE: Duration = Duration::from_secs(20);

/// A reader paging with the position of the last event it was given, while appenders
/// race it, is given every event exactly once, and each appender's events in the order
/// it appended them (the log order agrees with positions for appends that do not
/// overlap).
pub async fn event_pages_see_concurrent_appends_once_in_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let done = AtomicUsize::new(0);
    let outputs = race(APPENDERS + 1, |i| {
        let done = &done;
        async move {
            if i < APPENDERS {
                for n in 0..APPENDS {
                    let key = format!("{i}/{n:03}/{}", unique("e"));
                    ok(store.append_events(&[new_event(ws, &key)]).await, "append");
                }
                done.fetch_add(1, Ordering::SeqCst);
                return Vec::new();
            }
            read_all(store, ws, done).await
        }
    })
    .await;
    let seen: Vec<Event> = outputs.into_iter().flatten().collect();

    let mut ids = HashSet::new();
    for event in &seen {
        assert!(
            ids.insert(event.id),
            "event {} given twice to a reader paging by position",
            event.idempotency_key
        );
    }
    assert_eq!(
        seen.len(),
        APPENDERS * APPENDS,
        "a reader paging by position is given every event"
    );
    for appender in 0..APPENDERS {
        let mine: Vec<&str> = seen
            .iter()
            .map(|e| e.idempotency_key.as_str())
            .filter(|k| k.starts_with(&format!("{appender}/")))
            .collect();
        let mut in_order = mine.clone();
        in_order.sort_unstable();
        assert_eq!(
            mine, in_order,
            "one appender's events are listed in the order it appended them"
        );
    }
}

/// Pages through `ws` with a small limit until the appenders are done and every event
/// was given, or [`PATIENCE`] runs out after they are done.
async fn read_all(store: &DynStore, ws: WorkspaceId, done: &AtomicUsize) -> Vec<Event> {
    let mut after = 0;
    let mut seen = Vec::new();
    let mut deadline = None;
    while seen.len() < APPENDERS * APPENDS {
        let finished = done.load(Ordering::SeqCst) == APPENDERS;
        let page = ok(
            store.list_events(Scope::Workspace(ws), after, 7).await,
            "list_events",
        );
        if let Some(last) = page.last() {
            after = last.position;
        }
        seen.extend(page);
        if finished {
            let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + PATIENCE);
            if tokio::time::Instant::now() >= until {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    seen
}
