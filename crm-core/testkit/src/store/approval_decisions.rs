//! Cases for the outreach parts of [`ApprovalStore`](crm_core::store::ApprovalStore): the
//! item of a message, clean-approval streaks and atomic decisions.

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{OutboxMessageId, UserId, WorkspaceId};
use crm_core::model::{ApprovalItem, ApprovalStatus, OutboxMessage, OutboxStatus};
use crm_core::store::ApprovalStoreExt;

use super::fixtures::{approval, at, awaiting_message, decided_approval, expect_err, ok, unique};
use super::outbox::settled;

/// find_approval_for_outbox returns the message's item, or None (none, unknown, other tenant).
pub async fn approval_find_for_outbox(store: &DynStore) {
    let ws = WorkspaceId::new();
    let item = approval(store, ws, at(60)).await;
    let find = |ws, id| async move {
        ok(
            store.find_approval_for_outbox(ws, id).await,
            "find_approval_for_outbox",
        )
    };
    assert_eq!(
        find(ws, item.outbox_message_id).await,
        Some(item.clone()),
        "the message's item is found"
    );
    let bare = awaiting_message(store, ws).await;
    assert_eq!(find(ws, bare.id).await, None, "a message without an item");
    assert_eq!(
        find(ws, OutboxMessageId::new()).await,
        None,
        "an unknown message"
    );
    assert_eq!(
        find(WorkspaceId::new(), item.outbox_message_id).await,
        None,
        "another workspace never sees the item"
    );
}

/// clean_approval_streak: newest decision first (decided_at, id) up to a rejected or edited one.
pub async fn approval_clean_streak_newest_first(store: &DynStore) {
    use ApprovalStatus::{Approved, Expired, Pending, Rejected, Withdrawn};
    let ws = WorkspaceId::new();
    let key = unique("template");
    let streak = |key: String| async move {
        ok(
            store.clean_approval_streak(ws, &key).await,
            "clean_approval_streak",
        )
    };
    assert_eq!(streak(key.clone()).await, 0, "no items, no streak");
    decided_approval(store, ws, &key, Approved, at(4), false).await;
    decided_approval(store, ws, &key, Approved, at(5), false).await;
    decided_approval(store, ws, &key, Pending, at(6), false).await;
    decided_approval(store, ws, &key, Expired, at(7), false).await;
    decided_approval(store, ws, &key, Withdrawn, at(7), false).await;
    decided_approval(store, ws, &unique("other"), Rejected, at(8), false).await;
    decided_approval(store, WorkspaceId::new(), &key, Rejected, at(8), false).await;
    // Inserted last (greatest ids) but decided earlier than the clean approvals.
    decided_approval(store, ws, &key, Rejected, at(3), false).await;
    decided_approval(store, ws, &key, Approved, at(1), false).await;
    assert_eq!(
        streak(key.clone()).await,
        2,
        "the two newest decisions are clean approvals; the rejection at(3) ends the streak"
    );
    assert_eq!(streak(unique("unknown")).await, 0, "an unknown template");

    decided_approval(store, ws, &key, Approved, at(9), true).await;
    assert_eq!(
        streak(key.clone()).await,
        0,
        "an approval with an edited body ends the streak"
    );
    // Equal decision times: the greater id is the newer decision.
    decided_approval(store, ws, &key, Rejected, at(10), false).await;
    decided_approval(store, ws, &key, Approved, at(10), false).await;
    assert_eq!(
        streak(key.clone()).await,
        1,
        "ties on decided_at are ordered by id, greatest first"
    );
}

/// `item` approved with an edited text at `at(2)`, and its message released to Pending
/// with that text.
fn approve_and_release(
    item: &ApprovalItem,
    message: &OutboxMessage,
) -> (ApprovalItem, OutboxMessage) {
    let mut decided = item.clone();
    decided.status = ApprovalStatus::Approved;
    decided.decided_by = Some(UserId::new());
    decided.decided_at = Some(at(2));
    decided.edited_body = Some("Edited by the approver".into());
    decided.updated_at = at(2);
    let mut released = message.clone();
    released.status = OutboxStatus::Pending;
    released.body = "Edited by the approver".into();
    released.updated_at = at(2);
    (decided, released)
}

/// decide_approval stores the decision and the item's own message together or neither.
pub async fn approval_decide_atomically(store: &DynStore) {
    let ws = WorkspaceId::new();
    let item = approval(store, ws, at(60)).await;
    let message = ok(store.get_outbox(ws, item.outbox_message_id).await, "get");
    let (decided, released) = approve_and_release(&item, &message);
    let other = awaiting_message(store, ws).await;

    let mut undecided = decided.clone();
    undecided.status = ApprovalStatus::Pending;
    let mut stale_message = released.clone();
    stale_message.version += 1;
    let mut stale_item = decided.clone();
    stale_item.version += 1;
    let mut in_flight = released.clone();
    in_flight.status = OutboxStatus::InFlight;
    let refused: [(&ApprovalItem, Option<&OutboxMessage>, Kind, &str); 5] = [
        (
            &undecided,
            Some(&released),
            Kind::Invalid,
            "a Pending decision",
        ),
        (
            &decided,
            Some(&other),
            Kind::Invalid,
            "another item's message",
        ),
        (
            &decided,
            Some(&stale_message),
            Kind::VersionConflict,
            "a stale message",
        ),
        (
            &stale_item,
            Some(&released),
            Kind::VersionConflict,
            "a stale item",
        ),
        (
            &decided,
            Some(&in_flight),
            Kind::Invalid,
            "a message set InFlight",
        ),
    ];
    for (item, message, kind, what) in refused {
        expect_err(store.decide_approval(item, message).await, kind, what);
    }
    assert_eq!(
        ok(store.get_approval(ws, item.id).await, "get"),
        item,
        "refused decisions leave the item"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "and its message unchanged"
    );

    let done = ok(
        store.decide_approval(&decided, Some(&released)).await,
        "decide_approval",
    );
    let mut expected_item = decided.clone();
    expected_item.version += 1;
    let mut expected_message = released.clone();
    expected_message.version += 1;
    assert_eq!(
        done.item, expected_item,
        "the decision is stored with version + 1"
    );
    let stored_message = done.message.clone().unwrap_or_else(|| message.clone());
    assert_eq!(
        settled(&stored_message),
        settled(&expected_message),
        "the message is stored with the decision, version + 1"
    );
    assert_eq!(
        ok(store.get_approval(ws, item.id).await, "get"),
        expected_item
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        stored_message
    );

    let lone = approval(store, ws, at(60)).await;
    let lone_message = ok(store.get_outbox(ws, lone.outbox_message_id).await, "get");
    let mut rejected = lone.clone();
    rejected.status = ApprovalStatus::Rejected;
    rejected.reason = Some("off-brand".into());
    rejected.decided_at = Some(at(3));
    let done = ok(
        store.decide_approval(&rejected, None).await,
        "decide_approval",
    );
    assert_eq!(done.message, None, "no message given, none returned");
    assert_eq!(done.item.version, 2);
    assert_eq!(
        ok(store.get_outbox(ws, lone.outbox_message_id).await, "get"),
        lone_message,
        "a decision without a message leaves the message alone"
    );
}
