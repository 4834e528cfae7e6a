//! Cases for parking a claimed message for approval: the approval item and the parked
//! message are stored in one atomic step, so an approver never sees a pending item whose
//! message is still in flight.

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::events::kinds;
use crm_core::ids::WorkspaceId;
use crm_core::model::{ApprovalStatus, OutboxStatus};
use crm_core::store::{ApprovalStoreExt, Inserted, Page};

use super::events_emitted::the_event;
use super::fixtures::{
    at, claim_at, claim_one_message, created, existing, expect_err, in_flight_message,
    new_approval, ok, token,
};
use super::outbox::settled;

/// hold_outbox_for_approval parks an in-flight message, unclaimable, attempt given back.
pub async fn outbox_hold_for_approval(store: &DynStore) {
    let ws = WorkspaceId::new();
    let message = in_flight_message(store, ws, None).await;
    let lease_token = token(message.lease.as_ref());
    let item = new_approval(&message, at(600));
    let mut foreign = item.clone();
    foreign.workspace_id = WorkspaceId::new();
    expect_err(
        store
            .hold_outbox_for_approval(ws, message.id, lease_token + 1, &item, at(1))
            .await,
        Kind::LeaseLost,
        "hold_outbox_for_approval with a token that is not the message's",
    );
    expect_err(
        store
            .hold_outbox_for_approval(
                foreign.workspace_id,
                message.id,
                lease_token,
                &foreign,
                at(1),
            )
            .await,
        Kind::NotFound,
        "hold_outbox_for_approval from another workspace",
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "refused holds change nothing"
    );
    assert_eq!(
        ok(store.find_approval_for_outbox(ws, message.id).await, "find"),
        None,
        "refused holds insert no item"
    );
    let hold = ok(
        store
            .hold_outbox_for_approval(ws, message.id, lease_token, &item, at(1))
            .await,
        "hold_outbox_for_approval",
    );
    assert_eq!(
        hold.item,
        Inserted {
            value: item.clone(),
            created: true
        },
        "the item is inserted as given"
    );
    let held = hold.message;
    let mut expected = message.clone();
    expected.status = OutboxStatus::AwaitingApproval;
    expected.attempts -= 1;
    expected.version += 1;
    assert_eq!(
        settled(&held),
        settled(&expected),
        "held: AwaitingApproval, attempt given back, version + 1"
    );
    assert_eq!(held.lease, None, "the lease is cleared");
    assert_eq!(held.updated_at, at(1), "updated_at is `now`");
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        held,
        "the held message is stored"
    );
    assert!(
        ok(
            store
                .claim_outbox(&claim_at(ws, "dispatcher-2", at(60)))
                .await,
            "claim_outbox",
        )
        .is_empty(),
        "a held message is not claimable"
    );
    expect_err(
        store
            .hold_outbox_for_approval(ws, message.id, lease_token, &item, at(2))
            .await,
        Kind::LeaseLost,
        "hold_outbox_for_approval of a message no longer InFlight",
    );
    let mut release = held.clone();
    release.status = OutboxStatus::Pending;
    ok(store.update_outbox(&release).await, "release to Pending");
    let again = claim_one_message(store, ws, at(60)).await;
    assert!(
        token(again.lease.as_ref()) > lease_token,
        "the next claim's fencing token is greater than the held one's"
    );
    assert_eq!(
        ok(
            store
                .list_outbox(ws, Some(OutboxStatus::InFlight), Page::first(10))
                .await,
            "list_outbox",
        )
        .len(),
        1,
        "one message in flight again"
    );
}

/// The message's existing item wins over the given one: a pending one is returned and
/// the message parked beside it; a decided one leaves the message in flight under the
/// caller's lease; an item for another message is refused, storing nothing.
pub async fn outbox_hold_for_approval_with_existing_item(store: &DynStore) {
    let ws = WorkspaceId::new();
    let message = in_flight_message(store, ws, None).await;
    let lease_token = token(message.lease.as_ref());
    let other = in_flight_message(store, ws, None).await;
    expect_err(
        store
            .hold_outbox_for_approval(
                ws,
                message.id,
                lease_token,
                &new_approval(&other, at(600)),
                at(1),
            )
            .await,
        Kind::Invalid,
        "hold_outbox_for_approval with another message's item",
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "a refused hold leaves the message in flight"
    );
    let first = created(
        store
            .insert_approval(&new_approval(&message, at(600)))
            .await,
        "insert_approval",
    );
    let hold = ok(
        store
            .hold_outbox_for_approval(
                ws,
                message.id,
                lease_token,
                &new_approval(&message, at(900)),
                at(1),
            )
            .await,
        "hold_outbox_for_approval beside a pending item",
    );
    assert_eq!(
        hold.item,
        Inserted {
            value: first.clone(),
            created: false
        },
        "the existing item is returned, not duplicated"
    );
    assert_eq!(
        hold.message.status,
        OutboxStatus::AwaitingApproval,
        "parked beside the pending item"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        hold.message,
        "the parked message is stored"
    );
    assert_eq!(
        ok(
            store.list_approvals(ws, None, Page::first(10)).await,
            "list_approvals"
        ),
        vec![first],
        "one item per message"
    );

    // A rule-approved item: the message stays in flight for the caller to send it.
    let approved_message = other;
    let other_token = token(approved_message.lease.as_ref());
    let mut approved = new_approval(&approved_message, at(600));
    approved.status = ApprovalStatus::Approved;
    approved.decided_at = Some(at(0));
    let approved = created(
        store.insert_approval(&approved).await,
        "insert approved item",
    );
    let hold = ok(
        store
            .hold_outbox_for_approval(
                ws,
                approved_message.id,
                other_token,
                &new_approval(&approved_message, at(900)),
                at(1),
            )
            .await,
        "hold_outbox_for_approval beside a decided item",
    );
    assert_eq!(
        hold.item,
        Inserted {
            value: approved,
            created: false
        },
        "the decided item is returned"
    );
    assert_eq!(
        hold.message, approved_message,
        "the message is untouched, still in flight"
    );
    assert_eq!(
        ok(store.get_outbox(ws, approved_message.id).await, "get"),
        approved_message,
        "nothing was stored for the message"
    );
}

/// Once the call returns, the item and the parked message are both visible; a call
/// whose lease was lost (another dispatcher re-claimed the message) inserts no item.
pub async fn outbox_hold_for_approval_is_atomic(store: &DynStore) {
    let ws = WorkspaceId::new();
    let message = in_flight_message(store, ws, None).await;
    let stale = token(message.lease.as_ref());
    ok(
        store
            .reap_outbox_leases(crm_core::store::Scope::Workspace(ws), at(24 * 60))
            .await,
        "reap",
    );
    let again = claim_one_message(store, ws, at(24 * 60)).await;
    expect_err(
        store
            .hold_outbox_for_approval(
                ws,
                message.id,
                stale,
                &new_approval(&message, at(48 * 60)),
                at(24 * 60),
            )
            .await,
        Kind::LeaseLost,
        "hold_outbox_for_approval under a lost lease",
    );
    assert_eq!(
        ok(store.find_approval_for_outbox(ws, message.id).await, "find"),
        None,
        "a lease-lost hold inserts no item"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        again,
        "nor changes the message"
    );
    let item = new_approval(&message, at(48 * 60));
    let hold = ok(
        store
            .hold_outbox_for_approval(
                ws,
                message.id,
                token(again.lease.as_ref()),
                &item,
                at(24 * 60),
            )
            .await,
        "hold_outbox_for_approval",
    );
    assert!(hold.item.created, "the item is new");
    let seen = ok(store.find_approval_for_outbox(ws, message.id).await, "find");
    assert_eq!(
        seen.as_ref(),
        Some(&item),
        "the item is visible once the call returns"
    );
    let parked = ok(store.get_outbox(ws, message.id).await, "get");
    assert_eq!(
        parked.status,
        OutboxStatus::AwaitingApproval,
        "and its message is parked"
    );
    assert_eq!(parked, hold.message, "as returned");
    // Exactly one `approval.requested`: the lease-lost call appended none.
    the_event(store, ws, kinds::APPROVAL_REQUESTED, &item.id.to_string()).await;
    let _ = existing(
        store
            .insert_approval(&new_approval(&message, at(900)))
            .await,
        "insert again",
    );
    assert!(
        ok(
            store
                .claim_outbox(&claim_at(ws, "dispatcher-3", at(25 * 60)))
                .await,
            "claim"
        )
        .is_empty(),
        "the parked message is not claimable"
    );
}
