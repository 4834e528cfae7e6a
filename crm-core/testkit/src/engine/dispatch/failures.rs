//! Scenarios of provider failures: backoff, dead letter, retry-after, permanent
//! failures and suppression of invalid recipients.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;

use super::{Harness, config, once};
use crate::store::fixtures::ok;
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::model::{Channel, OutboxStatus, SuppressionReason};
use crm_core::outreach::dispatch::{StubChannel, StubFailure, backoff_ceiling};
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::store::ComplianceStoreExt;

fn failing(h: &Harness, failure: StubFailure) -> StubChannel {
    StubChannel::failing(Channel::Email, failure).with_clock(Arc::new(h.clock.clone()))
}

/// Retryable errors reschedule within the jittered backoff ceiling, counting attempts,
/// and the last allowed attempt dead-letters the message with the reason.
pub async fn dispatch_retryable_errors_back_off_then_dead_letter(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let stub = failing(&h, StubFailure::Retryable { retry_after: None });
    let (base, cap) = (Duration::seconds(10), Duration::seconds(40));
    let cfg = config().with_max_attempts(3).with_backoff(base, cap);
    let dispatcher = h.dispatcher_with(&stub, WorkspaceSettings::default(), cfg);

    for attempt in 1..=2u32 {
        let report = once(&dispatcher).await;
        assert_eq!(report.retried, 1, "attempt {attempt}: {report:?}");
        let stored = h.get(message.id).await;
        assert_eq!(stored.status, OutboxStatus::Pending);
        assert_eq!(stored.attempts, attempt as i32, "a provider failure counts");
        let now = h.clock.now();
        assert!(
            stored.not_before >= now
                && stored.not_before <= now + backoff_ceiling(base, cap, attempt),
            "attempt {attempt}: retry within the backoff ceiling"
        );
        assert!(
            stored
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("stub timeout"))
        );
        h.clock.set(stored.not_before);
    }
    let report = once(&dispatcher).await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::DeadLettered);
    let why = stored.last_error.unwrap_or_default();
    assert!(
        why.contains("stub timeout") && why.contains("3 attempts"),
        "{why}"
    );
    assert_eq!(stub.handed_count(), 3, "max attempts reached the provider");
    assert_eq!(once(&dispatcher).await.claimed, 0, "a dead letter is final");
}

/// A rate-limited send waits exactly the provider's `retry_after`, then goes out.
pub async fn dispatch_rate_limited_honours_retry_after(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let stub = h.stub.clone().with_script([StubFailure::RateLimited {
        retry_after: Some(StdDuration::from_secs(90)),
    }]);
    let dispatcher = h.dispatcher_with(&stub, WorkspaceSettings::default(), config());

    let report = once(&dispatcher).await;
    assert_eq!(report.retried, 1, "{report:?}");
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Pending);
    assert_eq!(stored.not_before, h.clock.now() + Duration::seconds(90));
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rate limited"))
    );

    assert_eq!(
        once(&dispatcher).await.claimed,
        0,
        "not due before retry_after"
    );
    h.clock.set(stored.not_before);
    assert_eq!(once(&dispatcher).await.sent, 1);
    assert_eq!(stub.handed_count(), 2);
    assert_eq!(stub.delivered_count(), 1);
}

/// A permanent error fails the message at once, without suppressing the address.
pub async fn dispatch_permanent_errors_fail(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let stub = failing(&h, StubFailure::Permanent);
    let dispatcher = h.dispatcher_with(&stub, WorkspaceSettings::default(), config());
    let report = once(&dispatcher).await;
    assert_eq!(report.failed, 1, "{report:?}");
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Failed);
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rejected"))
    );
    let suppression = ok(
        h.store
            .find_suppression(h.ws, Channel::Email, &message.recipient)
            .await,
        "find_suppression",
    );
    assert!(suppression.is_none(), "a permanent error does not suppress");
    assert_eq!(stub.handed_count(), 1, "no retry after a permanent error");
}

/// An invalid recipient fails the message and suppresses the address, so the next
/// message to it is cancelled without reaching the provider.
pub async fn dispatch_invalid_recipient_fails_and_suppresses(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let stub = failing(&h, StubFailure::InvalidRecipient);
    let dispatcher = h.dispatcher_with(&stub, WorkspaceSettings::default(), config());
    let report = once(&dispatcher).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Failed);
    let suppression = ok(
        h.store
            .find_suppression(h.ws, Channel::Email, &message.recipient)
            .await,
        "find_suppression",
    )
    .expect("the invalid address is suppressed");
    assert_eq!(suppression.reason, SuppressionReason::InvalidRecipient);

    let mut again = message.clone();
    again.id = crm_core::ids::OutboxMessageId::new();
    again.idempotency_key = format!("{}-again", message.idempotency_key);
    again.status = OutboxStatus::Pending;
    again.attempts = 0;
    again.lease = None;
    again.last_error = None;
    again.version = 1;
    let again = h.enqueue_message(&again).await;
    let report = once(&dispatcher).await;
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(h.get(again.id).await.status, OutboxStatus::Cancelled);
    assert_eq!(
        stub.handed_count(),
        1,
        "a suppressed address is not tried again"
    );
}
