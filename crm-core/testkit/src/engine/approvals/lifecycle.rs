//! Scenarios around decisions: expiry, tenant isolation, notification, audit.

use std::sync::Arc;

use chrono::Duration;

use crate::store::fixtures::{era, ok, sorted};
use crm_core::ids::{UserId, WorkspaceId};
use crm_core::model::{Actor, ApprovalStatus, OutboxStatus};
use crm_core::outreach::approvals::{Announcement, InboxError, RecordingNotifier};
use crm_core::store::{DynStore, Page};

use super::fixtures::{
    ItemSpec, already, done, inbox, message_for, message_of, pending_item, reload,
};

/// `expire_due` marks every pending item past its TTL `Expired` and cancels its
/// message; younger and decided items are untouched. An item past its TTL that the
/// sweep has not reached yet cannot be approved: the attempt expires it.
pub async fn expiry_marks_items_expired_and_cancels_messages(store: Arc<DynStore>) {
    let t0 = era(2011);
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, clock) = inbox(&store, user, &[ws]);
    clock.set(t0);
    let short = |ttl| ItemSpec::default().lives(t0, Duration::hours(ttl));
    let old = pending_item(&*store, ws, short(1)).await;
    let other_ws = WorkspaceId::new();
    let foreign = pending_item(&*store, other_ws, short(1)).await;
    let young = pending_item(&*store, ws, short(3)).await;
    let decided = pending_item(&*store, ws, short(1)).await;
    done(
        inbox.approve(ws, decided.id, user).await,
        "approve before the TTL",
    );

    clock.set(t0 + Duration::hours(2));
    let report = done(inbox.expire_due().await, "expire_due");
    assert_eq!(
        sorted(report.expired.iter().map(|i| i.id).collect()),
        sorted(vec![old.id, foreign.id]),
        "exactly the pending items past their TTL, in every workspace"
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        sorted(report.cancelled.clone()),
        sorted(vec![old.outbox_message_id, foreign.outbox_message_id])
    );
    for item in [&old, &foreign] {
        assert_eq!(reload(&*store, item).await.status, ApprovalStatus::Expired);
        let message = message_of(&*store, item).await;
        assert_eq!(
            message.status,
            OutboxStatus::Cancelled,
            "an expired item's message never goes"
        );
    }
    assert_eq!(
        reload(&*store, &young).await.status,
        ApprovalStatus::Pending
    );
    assert_eq!(
        reload(&*store, &decided).await.status,
        ApprovalStatus::Approved
    );
    assert_eq!(
        message_of(&*store, &decided).await.status,
        OutboxStatus::Pending
    );
    already(
        inbox.approve(ws, old.id, user).await,
        ApprovalStatus::Expired,
        "an expired item cannot be approved",
    );

    clock.set(t0 + Duration::hours(4));
    already(
        inbox.approve(ws, young.id, user).await,
        ApprovalStatus::Expired,
        "an item past its TTL expires when someone tries to decide it",
    );
    assert_eq!(
        reload(&*store, &young).await.status,
        ApprovalStatus::Expired
    );
    assert_eq!(
        message_of(&*store, &young).await.status,
        OutboxStatus::Cancelled
    );
    clock.set(t0 + Duration::hours(5));
    let again = done(inbox.expire_due().await, "expire_due again");
    assert!(again.expired.is_empty(), "nothing is expired twice");
}

/// Another workspace's item looks missing to every inbox call, even to a user who
/// may approve in both workspaces; a user of one workspace is Forbidden in another.
pub async fn inbox_tenant_isolation(store: Arc<DynStore>) {
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws, other]);
    let item = pending_item(&*store, ws, ItemSpec::default()).await;
    let not_found = |r: Result<_, InboxError>, what: &str| {
        assert!(
            matches!(r, Err(InboxError::NotFound { id }) if id == item.id),
            "{what} from another workspace is NotFound: {r:?}"
        );
    };
    not_found(inbox.get(other, item.id).await, "get");
    not_found(inbox.approve(other, item.id, user).await, "approve");
    not_found(inbox.reject(other, item.id, user, "no").await, "reject");
    not_found(
        inbox.edit_and_approve(other, item.id, user, "X").await,
        "edit",
    );
    let batch = inbox.batch_approve(other, &[item.id], user).await;
    assert!(
        matches!(batch[0].1, Err(InboxError::NotFound { .. })),
        "{batch:?}"
    );
    assert!(
        done(inbox.list_pending(other, Page::first(10)).await, "list").is_empty(),
        "list_pending is scoped"
    );
    let (local_only, _clock) = super::fixtures::inbox(&store, user, &[other]);
    assert!(
        matches!(
            local_only.approve(ws, item.id, user).await,
            Err(InboxError::Forbidden { .. })
        ),
        "approving is allowed per workspace"
    );
    assert_eq!(reload(&*store, &item).await, item, "the item is untouched");
    assert_eq!(
        message_of(&*store, &item).await.status,
        OutboxStatus::AwaitingApproval
    );
}

/// Submitting a new item calls the notifier once; a resubmission does not. A failing
/// notifier loses nothing: the item stays pending in the inbox.
pub async fn notifier_called_for_new_items_and_failure_loses_nothing(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let notifier = RecordingNotifier::new();
    let (plain, _clock) = inbox(&store, user, &[ws]);
    let inbox = plain.clone().with_notifier(Arc::new(notifier.clone()));

    let new_item = |store: Arc<DynStore>| async move {
        let message =
            message_for(ws, &ItemSpec::default()).with_status(OutboxStatus::AwaitingApproval);
        let message = ok(store.enqueue_outbox(&message).await, "enqueue").value;
        let now = message.created_at;
        crm_core::model::ApprovalItem::pending(
            ws,
            message.id,
            message.channel,
            message.body,
            now,
            now + Duration::days(1),
        )
        .expect("valid item")
    };
    let item = new_item(Arc::clone(&store)).await;
    let submitted = done(inbox.submit(&item).await, "submit");
    assert!(submitted.created);
    assert_eq!(submitted.announcement, Announcement::Notified);
    assert_eq!(
        notifier.notified(),
        vec![item.id],
        "the notifier hears of the new item"
    );
    let again = done(inbox.submit(&item).await, "submit again");
    assert!(!again.created);
    assert_eq!(again.announcement, Announcement::NotNeeded);
    assert_eq!(
        notifier.notified().len(),
        1,
        "an existing item is not announced again"
    );

    let failing = RecordingNotifier::failing();
    let loud = plain.clone().with_notifier(Arc::new(failing.clone()));
    let doomed = new_item(Arc::clone(&store)).await;
    let submitted = done(loud.submit(&doomed).await, "submit with a failing notifier");
    assert_eq!(submitted.announcement, Announcement::Failed);
    assert_eq!(
        failing.notified(),
        vec![doomed.id],
        "the notifier was called"
    );
    assert_eq!(
        reload(&*store, &doomed).await,
        doomed,
        "the item is stored as submitted"
    );
    let pending = done(
        inbox.list_pending(ws, Page::first(10)).await,
        "list_pending",
    );
    assert!(
        pending.iter().any(|i| i.id == doomed.id),
        "and waits in the inbox"
    );

    let unannounced = new_item(Arc::clone(&store)).await;
    let quiet = done(plain.submit(&unannounced).await, "submit without notifier");
    assert_eq!(quiet.announcement, Announcement::NoNotifier);
    let decided = done(inbox.approve(ws, item.id, user).await, "approve");
    assert_eq!(inbox.announce(&decided).await, Announcement::NotNeeded);
    assert_eq!(notifier.notified().len(), 1, "decided items need nobody");
}

/// Every decision appends an audit entry about the item: who, what, the reason; the
/// message text (drafted or edited) never appears in it.
pub async fn decisions_are_audited_without_message_text(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, clock) = inbox(&store, user, &[ws]);
    let approved = pending_item(&*store, ws, ItemSpec::default()).await;
    let edited = pending_item(&*store, ws, ItemSpec::default()).await;
    let rejected = pending_item(&*store, ws, ItemSpec::default()).await;
    let expired = pending_item(&*store, ws, ItemSpec::default()).await;
    let secret_edit = "Edited text that must stay out of the audit trail";
    done(inbox.approve(ws, approved.id, user).await, "approve");
    done(
        inbox
            .edit_and_approve(ws, edited.id, user, secret_edit)
            .await,
        "edit",
    );
    done(
        inbox.reject(ws, rejected.id, user, "Off-brand").await,
        "reject",
    );
    clock.set(expired.expires_at);
    already(
        inbox.approve(ws, expired.id, user).await,
        ApprovalStatus::Expired,
        "late approval",
    );

    for (item, action, actor) in [
        (&approved, "approval.approved", Actor::User(user)),
        (&edited, "approval.edited", Actor::User(user)),
        (&rejected, "approval.rejected", Actor::User(user)),
        (&expired, "approval.expired", Actor::System),
    ] {
        let subject = item.id.to_string();
        let entries = ok(
            store.list_audit(ws, Some(&subject), Page::first(10)).await,
            "list_audit",
        );
        assert_eq!(
            entries.len(),
            1,
            "one entry per decision of {action}: {entries:?}"
        );
        let entry = &entries[0];
        assert_eq!(entry.action, action);
        assert_eq!(entry.actor, actor);
        let details = entry.details.to_string();
        assert!(
            !details.contains(&item.original_body),
            "no drafted text: {details}"
        );
        assert!(!details.contains(secret_edit), "no edited text: {details}");
    }
    let subject = rejected.id.to_string();
    let entries = ok(
        store.list_audit(ws, Some(&subject), Page::first(10)).await,
        "audit",
    );
    assert_eq!(
        entries[0].details["reason"], "Off-brand",
        "the reason is recorded"
    );
}
