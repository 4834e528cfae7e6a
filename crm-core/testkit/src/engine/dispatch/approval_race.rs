//! An approver racing the dispatcher: the item becomes visible only together with its
//! parked message, so approving the instant it appears never finds the message busy.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use super::{Harness, once};
use crate::engine::approvals::fixtures::inbox;
use crm_core::DynStore;
use crm_core::approval::ManualApproval;
use crm_core::ids::UserId;
use crm_core::model::OutboxStatus;
use crm_core::outreach::approvals::InboxError;
use crm_core::store::Page;

/// Rounds of the race: enough for the old two-step hold to lose it on either store.
const ROUNDS: u64 = 40;

/// An approver polling the inbox approves each item the instant it appears, while the
/// dispatcher is still settling the message. Every approval succeeds (never
/// `MessageBusy`), and every approved message is then sent once.
pub async fn dispatch_approver_acting_instantly_never_finds_the_message_busy(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let approver = UserId::new();
    let (inbox, _clock) = inbox(&h.store, approver, &[h.ws]);
    let inbox = Arc::new(inbox);
    let dispatcher = h.dispatcher().with_policy(Arc::new(ManualApproval));
    for round in 0..ROUNDS {
        let message = h.enqueue().await;
        let ws = h.ws;
        let polling = Arc::clone(&inbox);
        let approver_task = tokio::spawn(async move {
            loop {
                let pending = polling
                    .list_pending(ws, Page::first(10))
                    .await
                    .expect("list_pending");
                if let Some(item) = pending.first() {
                    return polling.approve(ws, item.id, approver).await;
                }
                tokio::task::yield_now().await;
            }
        });
        let report = once(&dispatcher).await;
        assert_eq!(report.held_for_approval, 1, "round {round}: {report:?}");
        let approved = tokio::time::timeout(StdDuration::from_secs(10), approver_task)
            .await
            .expect("the approver sees the item")
            .expect("the approver task ends");
        match approved {
            Ok(_) => {}
            Err(e @ InboxError::MessageBusy { .. }) => {
                panic!("round {round}: the item was visible before its message was parked: {e}")
            }
            Err(e) => panic!("round {round}: approve failed: {e:?}"),
        }
        assert_eq!(
            h.get(message.id).await.status,
            OutboxStatus::Pending,
            "round {round}: the approval released the message"
        );
        let report = once(&dispatcher).await;
        assert_eq!(report.sent, 1, "round {round}: {report:?}");
        assert_eq!(h.get(message.id).await.status, OutboxStatus::Sent);
    }
    assert_eq!(
        h.stub.handed_count(),
        ROUNDS,
        "each approved message sent once"
    );
}
