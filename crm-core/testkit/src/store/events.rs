//! Cases for [`EventStore`].

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{EventId, WorkspaceId};
use crm_core::model::{Event, NewEvent};
use crm_core::store::EventStoreExt;
use crm_core::store::Scope;

use super::fixtures::{created, existing, expect_err, new_event, ok, unique};

/// Appends a fresh event with a unique key and returns it as stored.
async fn append(store: &DynStore, ws: WorkspaceId) -> Event {
    let new = new_event(ws, &unique("event"));
    let event = created(store.append_event(&new).await, "append_event");
    assert_eq!(
        event,
        Event::from_new(new, event.position),
        "append_event stores the event as given"
    );
    event
}

/// append_event assigns strictly increasing positions; get_event and list_events
/// (after_position exclusive, ascending, at most `limit`) return the events as appended.
pub async fn event_append_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let events = [
        append(store, ws).await,
        append(store, ws).await,
        append(store, ws).await,
    ];
    assert!(events[0].position >= 1, "positions start at 1");
    assert!(
        events.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase in append order"
    );
    for event in &events {
        assert_eq!(
            &ok(store.get_event(ws, event.id).await, "get_event"),
            event,
            "get_event round trip"
        );
    }
    let scope = Scope::Workspace(ws);
    let list = |after, limit| store.list_events(scope, after, limit);
    assert_eq!(
        ok(list(0, 10).await, "list_events"),
        events.to_vec(),
        "list_events: ascending by position"
    );
    assert_eq!(
        ok(list(events[0].position, 10).await, "list"),
        events[1..],
        "after_position is exclusive"
    );
    assert_eq!(
        ok(list(0, 1).await, "list"),
        events[..1],
        "list_events returns at most `limit`"
    );
    assert!(
        ok(list(events[2].position, 10).await, "list").is_empty(),
        "nothing after the last event"
    );
    for limit in [0, 1001] {
        expect_err(
            list(0, limit).await,
            Kind::Invalid,
            &format!("list_events with limit {limit} (1 to 1000)"),
        );
    }
    expect_err(
        store.get_event(ws, EventId::new()).await,
        Kind::NotFound,
        "get_event of an unknown id",
    );
}

/// append_event is idempotent on (workspace, key); a reused id with another key is
/// Conflict; blank kind or key is Invalid.
pub async fn event_append_is_idempotent(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("event");
    let first = created(
        store.append_event(&new_event(ws, &key)).await,
        "append_event",
    );
    let mut retry = new_event(ws, &key);
    retry.payload = serde_json::json!({ "different": true });
    let same = existing(
        store.append_event(&retry).await,
        "append_event with a used key",
    );
    assert_eq!(
        same, first,
        "the existing event is returned unchanged, position included"
    );
    expect_err(
        store.get_event(ws, retry.id).await,
        Kind::NotFound,
        "the duplicate was not stored",
    );
    let listed = ok(
        store.list_events(Scope::Workspace(ws), 0, 10).await,
        "list_events",
    );
    assert_eq!(
        listed,
        vec![first.clone()],
        "a duplicate append adds no event"
    );

    let mut same_id = new_event(ws, &unique("event"));
    same_id.id = first.id;
    expect_err(
        store.append_event(&same_id).await,
        Kind::Conflict,
        "append_event reusing an id with another key",
    );
    let blank_kind = NewEvent {
        kind: " ".into(),
        ..new_event(ws, &unique("event"))
    };
    expect_err(
        store.append_event(&blank_kind).await,
        Kind::Invalid,
        "append_event with a blank kind",
    );
    let blank_key = NewEvent {
        idempotency_key: String::new(),
        ..new_event(ws, "x")
    };
    expect_err(
        store.append_event(&blank_key).await,
        Kind::Invalid,
        "append_event with a blank key",
    );
    created(
        store
            .append_event(&new_event(WorkspaceId::new(), &key))
            .await,
        "keys are per workspace",
    );
}

/// get_event and list_events are scoped to the workspace; Scope::All lists every
/// workspace's events in position order.
pub async fn event_tenant_isolation_and_scope_all(store: &DynStore) {
    let (ws1, ws2) = (WorkspaceId::new(), WorkspaceId::new());
    let mine = [
        append(store, ws1).await,
        append(store, ws2).await,
        append(store, ws1).await,
    ];
    expect_err(
        store.get_event(ws2, mine[0].id).await,
        Kind::NotFound,
        "get_event from another workspace",
    );
    let only_ws2 = ok(
        store.list_events(Scope::Workspace(ws2), 0, 10).await,
        "list_events",
    );
    assert_eq!(
        only_ws2,
        mine[1..2],
        "list_events(Workspace) returns only that workspace's events"
    );

    let mut after = mine[0].position - 1;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = ok(
            store.list_events(Scope::All, after, 1000).await,
            "list_events(Scope::All)",
        );
        assert!(
            page.windows(2).all(|w| w[0].position < w[1].position),
            "Scope::All is ascending by position"
        );
        let Some(last) = page.last() else { break };
        after = last.position;
        seen.extend(
            page.into_iter()
                .filter(|e| e.workspace_id == ws1 || e.workspace_id == ws2),
        );
        if seen.len() >= mine.len() {
            break;
        }
    }
    assert_eq!(
        seen,
        mine.to_vec(),
        "Scope::All lists every workspace's events in position order"
    );
}

/// append_events: one answer per event in order; a key already in the log or repeated
/// within the batch is answered with the stored event and `created: false`; positions
/// follow the batch order; a refused batch stores none of its events.
pub async fn event_append_batch_in_order_and_all_or_none(store: &DynStore) {
    let ws = WorkspaceId::new();
    let before = append(store, ws).await;
    let first = new_event(ws, &unique("batch"));
    let second = new_event(ws, &unique("batch"));
    let again = new_event(ws, &before.idempotency_key);
    let repeat = new_event(ws, &first.idempotency_key);
    let batch = [first.clone(), again, second.clone(), repeat];
    let answers = ok(store.append_events(&batch).await, "append_events");
    let created: Vec<bool> = answers.iter().map(|a| a.created).collect();
    assert_eq!(
        created,
        [true, false, true, false],
        "created once per new key, at its first occurrence"
    );
    assert_eq!(
        answers[0].value,
        Event::from_new(first, answers[0].value.position)
    );
    assert_eq!(
        answers[1].value, before,
        "an existing key answers the stored event"
    );
    assert_eq!(
        answers[2].value,
        Event::from_new(second, answers[2].value.position)
    );
    assert_eq!(
        answers[3].value, answers[0].value,
        "a key repeated in the batch answers its first occurrence"
    );
    assert!(
        before.position < answers[0].value.position
            && answers[0].value.position < answers[2].value.position,
        "positions follow the batch order"
    );
    let retried = ok(store.append_events(&batch).await, "append_events again");
    assert!(
        retried.iter().all(|a| !a.created),
        "a retried batch creates nothing"
    );
    assert!(
        ok(store.append_events(&[]).await, "empty batch").is_empty(),
        "an empty batch answers nothing"
    );

    // An id reused with another key refuses the whole batch.
    let fresh = new_event(ws, &unique("batch"));
    let mut clash = new_event(ws, &unique("batch"));
    clash.id = before.id;
    expect_err(
        store.append_events(&[fresh.clone(), clash]).await,
        Kind::Conflict,
        "append_events with a reused id",
    );
    expect_err(
        store.get_event(ws, fresh.id).await,
        Kind::NotFound,
        "nothing of a refused batch is stored",
    );

    // So does an id used twice within the batch under two new keys.
    let twin_a = new_event(ws, &unique("batch"));
    let mut twin_b = new_event(ws, &unique("batch"));
    twin_b.id = twin_a.id;
    expect_err(
        store.append_events(&[twin_a.clone(), twin_b]).await,
        Kind::Conflict,
        "append_events with one id under two keys",
    );
    expect_err(
        store.get_event(ws, twin_a.id).await,
        Kind::NotFound,
        "nothing of a batch refused for an in-batch clash is stored",
    );
}
