//! Cases for [`TouchStore::count_queued_touches`](crm_core::store::TouchStore): a
//! contact's queued touches count its messages still queued (pending, awaiting
//! approval, in flight) and due before the bound, never sent, failed or cancelled
//! ones, manual tasks, nor other contacts' or workspaces' messages.

use chrono::{DateTime, Utc};
use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, Contact, OutboxMessage, OutboxStatus};

use super::fixtures::{at, claim_at, contact, created, new_message, ok, sent_record, token};

/// Enqueues a message to `to` due at `due`.
async fn queue(store: &DynStore, to: &Contact, due: DateTime<Utc>) -> OutboxMessage {
    let message = new_message(to.workspace_id)
        .with_contact(to.id)
        .with_not_before(due);
    created(store.enqueue_outbox(&message).await, "enqueue a message")
}

/// Claims the earliest due message of the workspace at `now`.
async fn claim(store: &DynStore, ws: WorkspaceId, now: DateTime<Utc>) -> OutboxMessage {
    let mut claim = claim_at(ws, "touches", now);
    claim.limit = 1;
    let mut claimed = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(claimed.len(), 1, "one message is due");
    claimed.remove(0)
}

/// Pending, awaiting-approval and in-flight messages due before the bound count; sent
/// and failed ones, manual tasks, other contacts and workspaces do not.
pub async fn touches_count_queued_messages_due_before_the_bound(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let bob = contact(store, ws).await;
    let end = at(24 * 60);
    let count = |before| async move {
        ok(
            store.count_queued_touches(ws, ada.id, before).await,
            "count_queued_touches",
        )
    };
    assert_eq!(count(end).await, 0, "no messages, no touches");

    // A message that fails for good is no touch.
    let failing = queue(store, &ada, at(-100)).await;
    assert_eq!(count(end).await, 1, "pending, overdue from before the day");
    let claimed = claim(store, ws, at(-90)).await;
    assert_eq!(claimed.id, failing.id);
    assert_eq!(count(end).await, 1, "in flight counts");
    ok(
        store
            .finish_outbox(
                ws,
                failing.id,
                token(claimed.lease.as_ref()),
                OutboxStatus::Failed,
                "rejected",
                at(-80),
            )
            .await,
        "finish failed",
    );
    assert_eq!(count(end).await, 0, "a failed message does not count");

    // Queued: due in the period, overdue, due exactly at the bound, awaiting approval.
    queue(store, &ada, at(60)).await;
    assert_eq!(count(end).await, 1, "pending, due before the bound");
    assert_eq!(count(at(60)).await, 0, "due at the bound: not before it");
    let overdue = queue(store, &ada, at(-30)).await;
    assert_eq!(count(end).await, 2, "pending, overdue");
    queue(store, &ada, end).await;
    assert_eq!(count(end).await, 2, "due at the bound is the next period's");
    let waiting = new_message(ws)
        .with_contact(ada.id)
        .with_status(OutboxStatus::AwaitingApproval);
    created(
        store.enqueue_outbox(&waiting).await,
        "enqueue awaiting approval",
    );
    assert_eq!(count(end).await, 3, "awaiting approval counts");

    // Not touches: a manual task, other contacts, messages without a contact.
    let mut task = new_message(ws).with_contact(ada.id);
    task.channel = Channel::ManualTask;
    created(store.enqueue_outbox(&task).await, "enqueue a manual task");
    queue(store, &bob, at(10)).await;
    created(
        store.enqueue_outbox(&new_message(ws)).await,
        "enqueue without contact",
    );
    assert_eq!(
        count(end).await,
        3,
        "manual tasks and other contacts do not count"
    );

    // In flight counts; once sent it is no longer queued (its activity counts instead).
    let claimed = claim(store, ws, at(1)).await;
    assert_eq!(
        claimed.id, overdue.id,
        "the overdue message is claimed first"
    );
    assert_eq!(count(end).await, 3, "in flight counts");
    ok(
        store
            .mark_outbox_sent(
                ws,
                overdue.id,
                token(claimed.lease.as_ref()),
                &sent_record(&claimed, ada.id, at(2)),
            )
            .await,
        "mark sent",
    );
    assert_eq!(count(end).await, 2, "a sent message is no longer queued");
    assert_eq!(
        count(end + chrono::Duration::days(1)).await,
        3,
        "a later bound also counts the message due at the end"
    );
    assert_eq!(
        ok(
            store
                .count_queued_touches(WorkspaceId::new(), ada.id, end)
                .await,
            "other workspace"
        ),
        0,
        "another workspace sees no touches"
    );
}
