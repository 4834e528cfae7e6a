//! Cases for [`TouchStore::count_contact_touches`](crm_core::store::TouchStore): a
//! contact's touches of a period count its queued messages due before the period ends
//! and its messages sent in the period, never manual tasks, failed or cancelled ones,
//! nor other contacts' or workspaces'.

use chrono::Duration;
use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, Contact, OutboxMessage, OutboxStatus};

use super::fixtures::{
    at, base, claim_at, contact, created, expect_err, new_message, ok, sent_record, token,
};

/// Enqueues a message to `to` due at `due`.
async fn queue(
    store: &DynStore,
    to: &Contact,
    due: chrono::DateTime<chrono::Utc>,
) -> OutboxMessage {
    let message = new_message(to.workspace_id)
        .with_contact(to.id)
        .with_not_before(due);
    created(store.enqueue_outbox(&message).await, "enqueue a message")
}

/// Claims the earliest due message of the workspace at `now`.
async fn claim(
    store: &DynStore,
    ws: WorkspaceId,
    now: chrono::DateTime<chrono::Utc>,
) -> OutboxMessage {
    let mut claim = claim_at(ws, "touches", now);
    claim.limit = 1;
    let mut claimed = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(claimed.len(), 1, "one message is due");
    claimed.remove(0)
}

/// Queued (pending, awaiting approval, in flight) and sent messages count; the period
/// bounds, manual tasks, final failures, other contacts and workspaces do not.
pub async fn touches_count_queued_and_sent_messages_of_the_period(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let bob = contact(store, ws).await;
    let (from, to) = (base(), base() + Duration::days(1));
    let count = || async {
        ok(
            store.count_contact_touches(ws, ada.id, from, to).await,
            "count_contact_touches",
        )
    };
    assert_eq!(count().await, 0, "no messages, no touches");

    // Sent yesterday (before `from`): not today's. Claimed and sent at base - 1h.
    let early = queue(store, &ada, at(-120)).await;
    let claimed = claim(store, ws, at(-90)).await;
    assert_eq!(claimed.id, early.id);
    assert_eq!(
        count().await,
        1,
        "an in-flight message due before the end counts"
    );
    ok(
        store
            .mark_outbox_sent(
                ws,
                early.id,
                token(claimed.lease.as_ref()),
                &sent_record(&claimed, ada.id, at(-60)),
            )
            .await,
        "mark sent",
    );
    assert_eq!(
        count().await,
        0,
        "a message sent before the period does not count"
    );

    // A message that fails for good is no touch.
    let failing = queue(store, &ada, at(-100)).await;
    let claimed = claim(store, ws, at(-90)).await;
    assert_eq!(claimed.id, failing.id);
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
    assert_eq!(count().await, 0, "a failed message does not count");

    // Queued: due in the period, overdue from before it, due when it ends.
    queue(store, &ada, at(60)).await;
    assert_eq!(count().await, 1, "pending, due in the period");
    let overdue = queue(store, &ada, at(-30)).await;
    assert_eq!(
        count().await,
        2,
        "pending, due before the period and still waiting"
    );
    queue(store, &ada, to).await;
    assert_eq!(
        count().await,
        2,
        "due when the period ends: the next period's"
    );
    let waiting = new_message(ws)
        .with_contact(ada.id)
        .with_status(OutboxStatus::AwaitingApproval);
    created(
        store.enqueue_outbox(&waiting).await,
        "enqueue awaiting approval",
    );
    assert_eq!(count().await, 3, "awaiting approval counts");

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
        count().await,
        3,
        "manual tasks and other contacts do not count"
    );

    // In flight, then sent in the period: still one touch.
    let claimed = claim(store, ws, at(1)).await;
    assert_eq!(
        claimed.id, overdue.id,
        "the overdue message is claimed first"
    );
    assert_eq!(count().await, 3, "in flight counts");
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
    assert_eq!(count().await, 3, "sent in the period counts");

    // Other periods and workspaces.
    assert_eq!(
        ok(
            store
                .count_contact_touches(ws, ada.id, to, to + Duration::days(1))
                .await,
            "tomorrow"
        ),
        3,
        "tomorrow: the messages still queued and the one due then, not today's sends"
    );
    assert_eq!(
        ok(
            store
                .count_contact_touches(WorkspaceId::new(), ada.id, from, to)
                .await,
            "other workspace"
        ),
        0,
        "another workspace sees no touches"
    );
    expect_err(
        store.count_contact_touches(ws, ada.id, to, from).await,
        Kind::Invalid,
        "a period that ends before it begins",
    );
}
