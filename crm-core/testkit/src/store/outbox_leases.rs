//! Cases for the lease-checked send path of [`OutboxStore`](crm_core::store::OutboxStore):
//! mark sent, reschedule, finish, reap.

use chrono::Duration;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::OutboxStatus;
use crm_core::store::{ActivityFilter, MAX_CLOCK_SKEW, Scope};

use super::fixtures::{
    at, claim_at, claim_one_message, contact, expect_err, in_flight_message, message_due, ok,
    sent_record, token,
};
use super::outbox::{reschedule, settled};

/// mark_outbox_sent stores Sent and the activity in one step, or neither; lease-checked.
pub async fn outbox_mark_sent_records_activity_atomically(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let message = in_flight_message(store, ws, Some(&ada)).await;
    let lease_token = token(message.lease.as_ref());
    let timeline = ActivityFilter {
        contact_id: Some(ada.id),
        ..Default::default()
    };
    let sent = sent_record(&message, ada.id, at(1));

    expect_err(
        store
            .mark_outbox_sent(ws, message.id, lease_token + 1, &sent)
            .await,
        Kind::LeaseLost,
        "mark_outbox_sent with a token that is not the message's",
    );
    let broken = sent_record(&message, ContactId::new(), at(1));
    assert!(
        store
            .mark_outbox_sent(ws, message.id, lease_token, &broken)
            .await
            .is_err(),
        "mark_outbox_sent with an activity about an unknown contact fails"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "a failed mark_sent changes nothing"
    );
    assert_eq!(
        ok(store.count_activities(ws, &timeline).await, "count"),
        0,
        "and records no activity"
    );

    let done = ok(
        store
            .mark_outbox_sent(ws, message.id, lease_token, &sent)
            .await,
        "mark_outbox_sent",
    );
    let mut expected = message.clone();
    expected.status = OutboxStatus::Sent;
    expected.provider_message_id = sent.provider_message_id.clone();
    expected.sent_at = Some(sent.sent_at);
    expected.version += 1;
    assert_eq!(
        settled(&done),
        settled(&expected),
        "mark_outbox_sent stores Sent, provider id, sent_at, version + 1"
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        done,
        "the sent message is stored"
    );
    let listed = ok(
        store.list_activities(ws, &timeline, 10).await,
        "list_activities",
    );
    assert_eq!(
        listed,
        vec![sent.activity.clone()],
        "the activity is recorded with the send"
    );
    expect_err(
        store
            .mark_outbox_sent(ws, message.id, lease_token, &sent)
            .await,
        Kind::LeaseLost,
        "mark_outbox_sent of a message that is no longer InFlight",
    );
    assert_eq!(
        ok(store.count_activities(ws, &timeline).await, "count"),
        1,
        "no second activity"
    );
}

/// reschedule_outbox returns the message to Pending at not_before with the reason, the
/// lease cleared, and the attempt kept or given back.
pub async fn outbox_reschedule_counts_or_gives_back_attempt(store: &DynStore) {
    let ws = WorkspaceId::new();
    let claimed = in_flight_message(store, ws, None).await;
    let first_token = token(claimed.lease.as_ref());
    let back = ok(
        store
            .reschedule_outbox(ws, claimed.id, first_token, &reschedule(at(30), true))
            .await,
        "reschedule_outbox",
    );
    let mut expected = claimed.clone();
    expected.status = OutboxStatus::Pending;
    expected.not_before = at(30);
    expected.last_error = Some("provider timeout".into());
    expected.version += 1;
    assert_eq!(
        settled(&back),
        settled(&expected),
        "rescheduled: Pending at not_before, reason stored, attempt kept"
    );
    assert_eq!(back.lease, None, "reschedule_outbox clears the lease");
    assert!(
        ok(
            store.claim_outbox(&claim_at(ws, "d", at(29))).await,
            "claim"
        )
        .is_empty(),
        "not due before not_before"
    );

    let again = claim_one_message(store, ws, at(30)).await;
    assert_eq!(again.attempts, 2, "the re-claim counts a second attempt");
    assert_eq!(
        token(again.lease.as_ref()),
        first_token + 1,
        "the re-claim's token is one greater"
    );
    let given_back = ok(
        store
            .reschedule_outbox(ws, again.id, first_token + 1, &reschedule(at(45), false))
            .await,
        "reschedule_outbox without counting the attempt",
    );
    assert_eq!(
        given_back.attempts, 1,
        "count_attempt: false gives the claim's attempt back"
    );
    assert_eq!(
        given_back.status,
        OutboxStatus::Pending,
        "the message is Pending again"
    );
    expect_err(
        store
            .reschedule_outbox(ws, again.id, first_token + 1, &reschedule(at(50), true))
            .await,
        Kind::LeaseLost,
        "reschedule_outbox of a message that is no longer InFlight",
    );
}

/// finish_outbox ends a message as Failed, DeadLettered or Cancelled with the reason;
/// any other status is Invalid.
pub async fn outbox_finish_statuses(store: &DynStore) {
    let ws = WorkspaceId::new();
    for status in [
        OutboxStatus::Failed,
        OutboxStatus::DeadLettered,
        OutboxStatus::Cancelled,
    ] {
        let message = in_flight_message(store, ws, None).await;
        let lease_token = token(message.lease.as_ref());
        let done = ok(
            store
                .finish_outbox(
                    ws,
                    message.id,
                    lease_token,
                    status,
                    "recipient rejected",
                    at(12),
                )
                .await,
            "finish_outbox",
        );
        assert_eq!(done.status, status, "finish_outbox stores the final status");
        assert_eq!(
            done.last_error.as_deref(),
            Some("recipient rejected"),
            "the reason is in last_error"
        );
        assert!(
            done.version > message.version,
            "finishing bumps the version"
        );
        expect_err(
            store
                .finish_outbox(ws, message.id, lease_token, status, "again", at(12))
                .await,
            Kind::LeaseLost,
            "finish_outbox of a message that is no longer InFlight",
        );
    }
    let message = in_flight_message(store, ws, None).await;
    let lease_token = token(message.lease.as_ref());
    for status in [
        OutboxStatus::Sent,
        OutboxStatus::Pending,
        OutboxStatus::InFlight,
        OutboxStatus::AwaitingApproval,
    ] {
        expect_err(
            store
                .finish_outbox(ws, message.id, lease_token, status, "nope", at(12))
                .await,
            Kind::Invalid,
            &format!("finish_outbox with status {status}"),
        );
    }
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get"),
        message,
        "refused finishes change nothing"
    );
}

/// Lease checks use the fencing token, not the clock: a re-claimed message refuses the
/// old token, an expired but unclaimed one still accepts its own.
pub async fn outbox_lease_checks_use_the_token(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let stale = in_flight_message(store, ws, Some(&ada)).await;
    let old = token(stale.lease.as_ref());
    assert_eq!(
        ok(
            store.reap_outbox_leases(Scope::Workspace(ws), at(10)).await,
            "reap"
        ),
        1,
        "the lease expired"
    );
    let fresh = claim_one_message(store, ws, at(10)).await;
    assert_eq!(
        token(fresh.lease.as_ref()),
        old + 1,
        "the re-claim's token is one greater"
    );
    expect_err(
        store
            .mark_outbox_sent(ws, stale.id, old, &sent_record(&stale, ada.id, at(11)))
            .await,
        Kind::LeaseLost,
        "mark_outbox_sent with the token of a lease taken over",
    );
    expect_err(
        store
            .reschedule_outbox(ws, stale.id, old, &reschedule(at(20), true))
            .await,
        Kind::LeaseLost,
        "reschedule_outbox with the token of a lease taken over",
    );
    expect_err(
        store
            .finish_outbox(ws, stale.id, old, OutboxStatus::Failed, "x", at(12))
            .await,
        Kind::LeaseLost,
        "finish_outbox with the token of a lease taken over",
    );
    assert_eq!(
        ok(store.get_outbox(ws, stale.id).await, "get"),
        fresh,
        "the new holder's claim is untouched"
    );

    let pending = message_due(store, ws, at(100)).await;
    expect_err(
        store
            .finish_outbox(ws, pending.id, 1, OutboxStatus::Cancelled, "x", at(12))
            .await,
        Kind::LeaseLost,
        "finish_outbox of a message that was never claimed",
    );
    let late = ok(
        store
            .mark_outbox_sent(ws, fresh.id, old + 1, &sent_record(&fresh, ada.id, at(600)))
            .await,
        "mark_outbox_sent after the lease expired but before anyone re-claimed it",
    );
    assert_eq!(
        late.status,
        OutboxStatus::Sent,
        "the token, not the clock, decides"
    );
}

/// reap_outbox_leases returns messages whose lease expired at or before
/// now - MAX_CLOCK_SKEW to Pending, lease cleared and token kept; it counts them.
pub async fn outbox_reap_expired_leases(store: &DynStore) {
    let ws = WorkspaceId::new();
    let early = in_flight_message(store, ws, None).await;
    message_due(store, ws, at(3)).await;
    let late = claim_one_message(store, ws, at(3)).await;
    let reap = |now| store.reap_outbox_leases(Scope::Workspace(ws), now);
    assert_eq!(ok(reap(at(4)).await, "reap"), 0, "no lease has expired yet");
    let past_skew = at(5) + MAX_CLOCK_SKEW;
    assert_eq!(
        ok(reap(past_skew - Duration::microseconds(1)).await, "reap"),
        0,
        "a lease that expired less than MAX_CLOCK_SKEW ago is not reaped"
    );
    assert_eq!(
        ok(reap(past_skew).await, "reap"),
        1,
        "a lease expiring exactly at now - MAX_CLOCK_SKEW is reaped"
    );
    let reaped = ok(store.get_outbox(ws, early.id).await, "get");
    assert_eq!(
        reaped.status,
        OutboxStatus::Pending,
        "a reaped message is Pending again"
    );
    assert_eq!(reaped.lease, None, "a reaped message has no lease");
    assert_eq!(
        ok(store.get_outbox(ws, late.id).await, "get"),
        late,
        "an unexpired lease is not reaped"
    );
    assert_eq!(
        ok(reap(past_skew).await, "reap"),
        0,
        "reaping again finds nothing"
    );
    let again = claim_one_message(store, ws, at(6)).await;
    assert_eq!(again.id, early.id, "the reaped message is claimable");
    assert_eq!(
        token(again.lease.as_ref()),
        token(early.lease.as_ref()) + 1,
        "the token survives the reap: the next claim is one greater"
    );
}
