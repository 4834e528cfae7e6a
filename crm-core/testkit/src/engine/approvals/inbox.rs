//! Scenarios of people deciding items: approve, reject, edit, batch, races.

use std::sync::Arc;

use crate::store::fixtures::{ok, race};
use crm_core::ids::{ApprovalItemId, UserId, WorkspaceId};
use crm_core::model::{ApprovalStatus, OutboxStatus};
use crm_core::outreach::approvals::InboxError;
use crm_core::store::DynStore;

use super::fixtures::{ItemSpec, already, done, inbox, message_of, pending_item, reload};

/// Approving stores the decision and releases the message to `Pending` with the
/// drafted text, ready for the dispatcher.
pub async fn approve_releases_the_message(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, clock) = inbox(&store, user, &[ws]);
    let item = pending_item(&*store, ws, ItemSpec::default().confidence(0.7)).await;
    let drafted = message_of(&*store, &item).await;
    let now = clock.advance(chrono::Duration::minutes(5));
    let approved = done(inbox.approve(ws, item.id, user).await, "approve");
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(approved.decided_by, Some(user), "the approver is recorded");
    assert_eq!(approved.decided_at, Some(now));
    assert_eq!(approved.edited_body, None);
    assert_eq!(approved.version, item.version + 1);
    assert_eq!(reload(&*store, &item).await, approved, "returned as stored");
    let message = message_of(&*store, &item).await;
    assert_eq!(
        message.status,
        OutboxStatus::Pending,
        "the message is released"
    );
    assert_eq!(message.body, drafted.body, "the drafted text is sent");
    let pending = done(
        inbox
            .list_pending(ws, crm_core::store::Page::first(10))
            .await,
        "list",
    );
    assert!(pending.is_empty(), "a decided item leaves the pending list");
}

/// Rejecting needs a reason, records it, and cancels the message.
pub async fn reject_cancels_the_message_with_its_reason(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let item = pending_item(&*store, ws, ItemSpec::default()).await;
    for blank in ["", "   "] {
        assert!(
            matches!(
                inbox.reject(ws, item.id, user, blank).await,
                Err(InboxError::Invalid(_))
            ),
            "a blank rejection reason is Invalid"
        );
    }
    assert_eq!(
        reload(&*store, &item).await,
        item,
        "a refused call changes nothing"
    );
    let rejected = done(
        inbox
            .reject(ws, item.id, user, "Wrong tone for this contact")
            .await,
        "reject",
    );
    assert_eq!(rejected.status, ApprovalStatus::Rejected);
    assert_eq!(
        rejected.reason.as_deref(),
        Some("Wrong tone for this contact")
    );
    assert_eq!(rejected.decided_by, Some(user));
    let message = message_of(&*store, &item).await;
    assert_eq!(
        message.status,
        OutboxStatus::Cancelled,
        "a rejected message never goes"
    );
    assert!(
        message
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Wrong tone")),
        "the message records why: {:?}",
        message.last_error
    );
}

/// Edit-then-approve stores the edited text, sends exactly it, and counts as an edit
/// for graduation: the template's clean streak starts over.
pub async fn edit_and_approve_sends_the_edited_body_and_breaks_the_streak(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let spec = ItemSpec::default().template("intro");
    let first = pending_item(&*store, ws, spec.clone()).await;
    done(inbox.approve(ws, first.id, user).await, "approve");
    assert_eq!(
        ok(store.clean_approval_streak(ws, "intro").await, "streak"),
        1
    );
    let item = pending_item(&*store, ws, spec).await;
    assert!(
        matches!(
            inbox.edit_and_approve(ws, item.id, user, "  ").await,
            Err(InboxError::Invalid(_))
        ),
        "a blank edited text is Invalid"
    );
    let edited_text = "Hi Ada, a shorter note from us.";
    let approved = done(
        inbox.edit_and_approve(ws, item.id, user, edited_text).await,
        "edit_and_approve",
    );
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(approved.edited_body.as_deref(), Some(edited_text));
    assert_eq!(
        approved.original_body, item.original_body,
        "before and after are kept"
    );
    assert_eq!(approved.body_to_send(), edited_text);
    let message = message_of(&*store, &item).await;
    assert_eq!(message.status, OutboxStatus::Pending);
    assert_eq!(message.body, edited_text, "the edited text is what is sent");
    assert_eq!(
        ok(store.clean_approval_streak(ws, "intro").await, "streak"),
        0,
        "an edit ends the clean streak"
    );
}

/// A user who may not approve gets `Forbidden` for every item of a batch, and nothing
/// changes; the single-item calls refuse the same way.
pub async fn batch_approve_by_unauthorised_user_changes_nothing(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let (boss, intruder) = (UserId::new(), UserId::new());
    let (inbox, _clock) = inbox(&store, boss, &[ws]);
    let mut items = Vec::new();
    for _ in 0..3 {
        items.push(pending_item(&*store, ws, ItemSpec::default()).await);
    }
    let ids: Vec<ApprovalItemId> = items.iter().map(|i| i.id).collect();
    let results = inbox.batch_approve(ws, &ids, intruder).await;
    assert_eq!(results.len(), 3, "one result per item");
    for ((id, result), expected) in results.iter().zip(&ids) {
        assert_eq!(id, expected, "results come in request order");
        assert!(
            matches!(result, Err(InboxError::Forbidden { user }) if *user == intruder),
            "an unauthorised user is Forbidden: {result:?}"
        );
    }
    assert!(matches!(
        inbox.approve(ws, ids[0], intruder).await,
        Err(InboxError::Forbidden { .. })
    ));
    assert!(matches!(
        inbox.reject(ws, ids[0], intruder, "no").await,
        Err(InboxError::Forbidden { .. })
    ));
    assert!(matches!(
        inbox
            .edit_and_approve(ws, ids[0], intruder, "Sneaky text")
            .await,
        Err(InboxError::Forbidden { .. })
    ));
    for item in &items {
        assert_eq!(&reload(&*store, item).await, item, "the item is unchanged");
        assert_eq!(
            message_of(&*store, item).await.status,
            OutboxStatus::AwaitingApproval,
            "the message still waits"
        );
    }
}

/// An authorised batch approves each item on its own and answers one result per id:
/// approved items, `AlreadyDecided` for one rejected before, `NotFound` for an unknown.
pub async fn batch_approve_returns_a_result_per_item(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let a = pending_item(&*store, ws, ItemSpec::default()).await;
    let b = pending_item(&*store, ws, ItemSpec::default()).await;
    let c = pending_item(&*store, ws, ItemSpec::default()).await;
    done(inbox.reject(ws, b.id, user, "duplicate").await, "reject b");
    let unknown = ApprovalItemId::new();
    let results = inbox
        .batch_approve(ws, &[a.id, b.id, c.id, unknown], user)
        .await;
    let ids: Vec<ApprovalItemId> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        vec![a.id, b.id, c.id, unknown],
        "one result per id, in order"
    );
    let mut results = results.into_iter().map(|(_, r)| r);
    for item in [&a, &b, &c] {
        let result = results.next().expect("a result");
        if item.id == b.id {
            already(
                result,
                ApprovalStatus::Rejected,
                "a rejected item in a batch",
            );
            assert_eq!(
                message_of(&*store, item).await.status,
                OutboxStatus::Cancelled
            );
        } else {
            let approved = done(result, "batch approve");
            assert_eq!(approved.status, ApprovalStatus::Approved);
            assert_eq!(approved.decided_by, Some(user));
            assert_eq!(
                message_of(&*store, item).await.status,
                OutboxStatus::Pending
            );
        }
    }
    assert!(
        matches!(results.next(), Some(Err(InboxError::NotFound { id })) if id == unknown),
        "an unknown id is NotFound"
    );
}

/// A decided item cannot be decided again, whatever the second decision.
pub async fn deciding_twice_is_already_decided(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let item = pending_item(&*store, ws, ItemSpec::default()).await;
    let approved = done(inbox.approve(ws, item.id, user).await, "approve");
    already(
        inbox.approve(ws, item.id, user).await,
        ApprovalStatus::Approved,
        "approve twice",
    );
    already(
        inbox.reject(ws, item.id, user, "too late").await,
        ApprovalStatus::Approved,
        "reject after approval",
    );
    already(
        inbox
            .edit_and_approve(ws, item.id, user, "Other text")
            .await,
        ApprovalStatus::Approved,
        "edit after approval",
    );
    assert_eq!(
        reload(&*store, &item).await,
        approved,
        "the first decision stands"
    );
    assert_eq!(
        message_of(&*store, &item).await.status,
        OutboxStatus::Pending
    );
}

/// Of an approval and a rejection racing for one item, exactly one wins and the other
/// is `AlreadyDecided`; the item and its message agree with the winner.
pub async fn concurrent_approve_and_reject_one_wins(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    for round in 0..5 {
        let item = pending_item(&*store, ws, ItemSpec::default()).await;
        let results = race(2, |i| {
            let inbox = &inbox;
            async move {
                if i == 0 {
                    inbox.approve(ws, item.id, user).await
                } else {
                    inbox.reject(ws, item.id, user, "racing").await
                }
            }
        })
        .await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one decision wins: {results:?}"
        );
        let winner = winners[0].status;
        for loser in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(loser, InboxError::AlreadyDecided { status } if *status == winner),
                "round {round}: the loser sees the winner's decision: {loser:?}"
            );
        }
        assert_eq!(reload(&*store, &item).await.status, winner);
        let expected = if winner == ApprovalStatus::Approved {
            OutboxStatus::Pending
        } else {
            OutboxStatus::Cancelled
        };
        assert_eq!(
            message_of(&*store, &item).await.status,
            expected,
            "round {round}"
        );
    }
    let item = pending_item(&*store, ws, ItemSpec::default()).await;
    let results = race(8, |_| {
        let inbox = &inbox;
        async move { inbox.approve(ws, item.id, user).await }
    })
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "eight approvers of one item: one decision is recorded: {results:?}"
    );
}
