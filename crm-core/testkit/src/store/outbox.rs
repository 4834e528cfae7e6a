//! Cases for [`OutboxStore`].

use chrono::{DateTime, Duration, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::{OutboxMessage, OutboxStatus};
use crm_core::store::{Claim, Page, Reschedule, Scope};

use super::fixtures::{
    assert_pagination, at, awaiting_message, base, claim_at, claim_one_message, contact, created,
    era, existing, expect_err, ids, in_flight_message, lease_ttl, message_due, new_message, ok,
    sent_record, sorted, token,
};

/// `message` with the fields a store may set on its own (lease, updated_at) blanked.
pub(super) fn settled(message: &OutboxMessage) -> OutboxMessage {
    let mut message = message.clone();
    message.lease = None;
    message.updated_at = DateTime::UNIX_EPOCH;
    message
}

/// Asserts `after` is `before` claimed by `worker` at `now`: InFlight, leased until
/// `now + lease_ttl`, attempts + 1, version + 1, nothing else changed.
#[track_caller]
fn assert_claimed(before: &OutboxMessage, after: &OutboxMessage, worker: &str, now: DateTime<Utc>) {
    let lease = after
        .lease
        .as_ref()
        .expect("a claimed message carries a lease");
    assert_eq!(
        lease.owner, worker,
        "the lease is owned by the claiming worker"
    );
    assert_eq!(
        lease.expires_at,
        now + lease_ttl(),
        "the lease runs until now + lease_ttl"
    );
    if let Some(previous) = &before.lease {
        assert_eq!(
            lease.token,
            previous.token + 1,
            "a claim's token is one greater than the previous one"
        );
    }
    let mut expected = before.clone();
    expected.status = OutboxStatus::InFlight;
    expected.attempts += 1;
    expected.version += 1;
    assert_eq!(
        settled(after),
        settled(&expected),
        "a claim sets InFlight, attempts + 1, version + 1, nothing else"
    );
}

pub(super) fn reschedule(not_before: DateTime<Utc>, count_attempt: bool) -> Reschedule {
    Reschedule {
        not_before,
        reason: Some("provider timeout".into()),
        count_attempt,
    }
}

/// enqueue_outbox round trip; idempotent on (workspace, idempotency_key).
pub async fn outbox_enqueue_round_trip_and_idempotency(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let message = new_message(ws)
        .with_contact(ada.id)
        .with_status(OutboxStatus::AwaitingApproval)
        .with_not_before(at(15))
        .with_metadata(serde_json::json!({ "template": "intro", "variant": 2 }));
    let stored = created(store.enqueue_outbox(&message).await, "enqueue_outbox");
    assert_eq!(stored, message, "enqueue_outbox returns the row as stored");
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get_outbox"),
        message,
        "get_outbox round trip"
    );

    let mut again = new_message(ws);
    again.idempotency_key = message.idempotency_key.clone();
    again.body = "A different body".into();
    let same = existing(
        store.enqueue_outbox(&again).await,
        "enqueue_outbox with a used key",
    );
    assert_eq!(same, message, "the existing message is returned unchanged");
    expect_err(
        store.get_outbox(ws, again.id).await,
        Kind::NotFound,
        "the duplicate was not stored",
    );
    let mut foreign = new_message(WorkspaceId::new());
    foreign.idempotency_key = message.idempotency_key.clone();
    created(
        store.enqueue_outbox(&foreign).await,
        "idempotency keys are per workspace",
    );
    expect_err(
        store.get_outbox(ws, OutboxMessageId::new()).await,
        Kind::NotFound,
        "get_outbox of an unknown id",
    );
}

/// enqueue_outbox: status Pending or AwaitingApproval and version 1 (Invalid); the
/// contact must exist in the workspace (InvalidReference).
pub async fn outbox_enqueue_validates(store: &DynStore) {
    let ws = WorkspaceId::new();
    for status in [
        OutboxStatus::InFlight,
        OutboxStatus::Sent,
        OutboxStatus::Cancelled,
    ] {
        expect_err(
            store
                .enqueue_outbox(&new_message(ws).with_status(status))
                .await,
            Kind::Invalid,
            &format!("enqueue_outbox with status {status}"),
        );
    }
    let mut v2 = new_message(ws);
    v2.version = 2;
    expect_err(
        store.enqueue_outbox(&v2).await,
        Kind::Invalid,
        "enqueue_outbox with version 2",
    );
    let mut blank = new_message(ws);
    blank.body = "  ".into();
    expect_err(
        store.enqueue_outbox(&blank).await,
        Kind::Invalid,
        "enqueue_outbox with a blank body",
    );
    let mut blank = new_message(ws);
    blank.idempotency_key = String::new();
    expect_err(
        store.enqueue_outbox(&blank).await,
        Kind::Invalid,
        "enqueue_outbox with a blank idempotency key",
    );
    let foreign = contact(store, WorkspaceId::new()).await;
    for (contact_id, what) in [
        (foreign.id, "another workspace's"),
        (ContactId::new(), "an unknown"),
    ] {
        expect_err(
            store
                .enqueue_outbox(&new_message(ws).with_contact(contact_id))
                .await,
            Kind::InvalidReference,
            &format!("enqueue_outbox to {what} contact"),
        );
    }
    let listed = ok(
        store.list_outbox(ws, None, Page::first(10)).await,
        "list_outbox",
    );
    assert!(listed.is_empty(), "rejected messages are not stored");
}

/// list_outbox filters by status and pages by id.
pub async fn outbox_list_by_status(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut pending = Vec::new();
    let mut awaiting = Vec::new();
    for _ in 0..3 {
        pending.push(message_due(store, ws, base()).await.id);
        awaiting.push(awaiting_message(store, ws).await.id);
    }
    for (status, expected) in [
        (Some(OutboxStatus::Pending), pending.clone()),
        (Some(OutboxStatus::AwaitingApproval), awaiting.clone()),
        (Some(OutboxStatus::Sent), vec![]),
    ] {
        let listed = ok(
            store.list_outbox(ws, status, Page::first(10)).await,
            "list_outbox",
        );
        assert_eq!(
            ids(&listed, |m| m.id),
            sorted(expected),
            "list_outbox({status:?}) lists exactly those"
        );
    }
    let mut all = pending;
    all.extend(awaiting);
    assert_pagination(
        "list_outbox(None)",
        all,
        |m: &OutboxMessage| m.id,
        |page| store.list_outbox(ws, None, page),
    )
    .await;
}

/// claim_outbox takes due Pending messages, earliest not_before first (ties by id), at
/// most `limit`, each InFlight under a lease with attempts + 1 and version + 1.
pub async fn outbox_claim_order_and_lease(store: &DynStore) {
    let ws = WorkspaceId::new();
    let later = message_due(store, ws, at(10)).await;
    let tie = [
        message_due(store, ws, at(0)).await,
        message_due(store, ws, at(0)).await,
    ];
    message_due(store, ws, at(30)).await;
    awaiting_message(store, ws).await;
    let mut first_two = tie.to_vec();
    first_two.sort_by_key(|m| m.id);

    let mut claim = claim_at(ws, "dispatcher-a", at(20));
    claim.limit = 2;
    let claimed = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(
        ids(&claimed, |m| m.id),
        ids(&first_two, |m| m.id),
        "claim_outbox: earliest not_before first, ties by id, at most `limit`"
    );
    for (before, after) in first_two.iter().zip(&claimed) {
        assert_claimed(before, after, "dispatcher-a", at(20));
        assert_eq!(
            &ok(store.get_outbox(ws, after.id).await, "get"),
            after,
            "the claim is stored"
        );
    }
    claim.limit = 10;
    let next = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(
        ids(&next, |m| m.id),
        vec![later.id],
        "claimed messages are not claimed again"
    );
    assert_claimed(&later, &next[0], "dispatcher-a", at(20));
    let rest = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert!(
        rest.is_empty(),
        "messages not yet due or awaiting approval are never claimed"
    );
}

/// update_outbox is compare-and-set to AwaitingApproval, Pending or Cancelled (else
/// Invalid); InFlight and final messages cannot be changed (Conflict).
pub async fn outbox_update_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let draft = awaiting_message(store, ws).await;
    let mut edit = draft.clone();
    edit.body = "Edited by the approver".into();
    let edited = ok(store.update_outbox(&edit).await, "update_outbox");
    let mut expected = edit.clone();
    expected.version = 2;
    assert_eq!(
        settled(&edited),
        settled(&expected),
        "update_outbox stores the edit with version + 1"
    );
    expect_err(
        store.update_outbox(&edit).await,
        Kind::VersionConflict,
        "update_outbox with a stale version",
    );
    for status in [
        OutboxStatus::InFlight,
        OutboxStatus::Sent,
        OutboxStatus::Failed,
    ] {
        let mut bad = edited.clone();
        bad.status = status;
        expect_err(
            store.update_outbox(&bad).await,
            Kind::Invalid,
            &format!("update_outbox to {status}"),
        );
    }
    let mut release = edited.clone();
    release.status = OutboxStatus::Pending;
    let released = ok(
        store.update_outbox(&release).await,
        "update_outbox to Pending",
    );
    assert_eq!(released.version, 3, "each update bumps the version");
    let in_flight = claim_one_message(store, ws, base()).await;
    assert_eq!(in_flight.id, draft.id, "a released message is claimable");
    let mut cancel = in_flight.clone();
    cancel.status = OutboxStatus::Cancelled;
    expect_err(
        store.update_outbox(&cancel).await,
        Kind::Conflict,
        "update_outbox of an InFlight message",
    );
    let lease_token = token(in_flight.lease.as_ref());
    let failed = ok(
        store
            .finish_outbox(
                ws,
                draft.id,
                lease_token,
                OutboxStatus::Failed,
                "bounced",
                base(),
            )
            .await,
        "finish_outbox",
    );
    let mut revive = failed.clone();
    revive.status = OutboxStatus::Pending;
    expect_err(
        store.update_outbox(&revive).await,
        Kind::Conflict,
        "update_outbox of a final message",
    );

    let pending = message_due(store, ws, base()).await;
    let mut withdraw = pending.clone();
    withdraw.status = OutboxStatus::Cancelled;
    let cancelled = ok(
        store.update_outbox(&withdraw).await,
        "update_outbox to Cancelled",
    );
    assert_eq!(
        cancelled.status,
        OutboxStatus::Cancelled,
        "a pending message can be cancelled"
    );
    let mut ghost = new_message(ws);
    ghost.status = OutboxStatus::Cancelled;
    expect_err(
        store.update_outbox(&ghost).await,
        Kind::NotFound,
        "update_outbox of an unknown id",
    );
}

/// Scope::All claims and reaps cover every workspace (worked in era 2004).
pub async fn outbox_claim_and_reap_across_all_workspaces(store: &DynStore) {
    let now = era(2004);
    let (ws1, ws2) = (WorkspaceId::new(), WorkspaceId::new());
    let mine = [
        message_due(store, ws1, now).await,
        message_due(store, ws2, now).await,
    ];
    let future = message_due(store, ws1, now + Duration::days(1)).await;
    let claim = Claim::new(Scope::All, "all-dispatcher", now, lease_ttl(), 1000);
    for claimed in ok(store.claim_outbox(&claim).await, "claim_outbox(Scope::All)") {
        assert!(
            claimed.not_before <= now,
            "Scope::All claims only due messages"
        );
        assert_eq!(
            claimed.status,
            OutboxStatus::InFlight,
            "claimed messages are InFlight"
        );
    }
    for message in &mine {
        let got = ok(
            store.get_outbox(message.workspace_id, message.id).await,
            "get",
        );
        assert_eq!(
            got.status,
            OutboxStatus::InFlight,
            "a Scope::All claim covers every workspace"
        );
        assert_eq!(
            got.lease.map(|l| l.expires_at),
            Some(now + lease_ttl()),
            "claimed at `now`"
        );
    }
    let waiting = ok(store.get_outbox(ws1, future.id).await, "get");
    assert_eq!(
        waiting.status,
        OutboxStatus::Pending,
        "a message not yet due is not claimed"
    );
    ok(
        store
            .reap_outbox_leases(Scope::All, now + Duration::minutes(10))
            .await,
        "reap(Scope::All)",
    );
    for message in &mine {
        let got = ok(
            store.get_outbox(message.workspace_id, message.id).await,
            "get",
        );
        assert_eq!(
            got.status,
            OutboxStatus::Pending,
            "a Scope::All reap covers every workspace"
        );
        let mut cancel = got.clone();
        cancel.status = OutboxStatus::Cancelled;
        ok(
            store.update_outbox(&cancel).await,
            "cancel the message to leave the era clean",
        );
    }
}

/// Another workspace can neither read, list, claim, complete, reschedule, finish, reap
/// nor update a message.
pub async fn outbox_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let flying = in_flight_message(store, ws, Some(&ada)).await;
    let lease_token = token(flying.lease.as_ref());
    let waiting = message_due(store, ws, base()).await;
    expect_err(
        store.get_outbox(other, flying.id).await,
        Kind::NotFound,
        "get_outbox from another workspace",
    );
    assert!(
        ok(
            store.list_outbox(other, None, Page::first(10)).await,
            "list"
        )
        .is_empty(),
        "list_outbox is scoped"
    );
    let claimed = ok(
        store
            .claim_outbox(&claim_at(other, "intruder", at(60)))
            .await,
        "claim_outbox",
    );
    assert!(
        claimed.is_empty(),
        "claim_outbox never claims another workspace's messages"
    );
    let reaped = ok(
        store
            .reap_outbox_leases(Scope::Workspace(other), at(600))
            .await,
        "reap",
    );
    assert_eq!(
        reaped, 0,
        "reap_outbox_leases never reaps another workspace's messages"
    );

    let sent = sent_record(&flying, ada.id, at(1));
    let unknown = store
        .mark_outbox_sent(ws, OutboxMessageId::new(), 1, &sent)
        .await
        .expect_err("unknown id");
    assert!(
        matches!(unknown.kind(), Kind::NotFound | Kind::LeaseLost),
        "a lease-checked call on an unknown id is NotFound or LeaseLost, got {unknown:?}"
    );
    let kind = unknown.kind();
    let rule =
        "a lease-checked call on another workspace's message looks like one on a missing row";
    expect_err(
        store
            .mark_outbox_sent(other, flying.id, lease_token, &sent)
            .await,
        kind,
        rule,
    );
    expect_err(
        store
            .reschedule_outbox(other, flying.id, lease_token, &reschedule(at(9), true))
            .await,
        kind,
        rule,
    );
    expect_err(
        store
            .finish_outbox(
                other,
                flying.id,
                lease_token,
                OutboxStatus::Failed,
                "x",
                base(),
            )
            .await,
        kind,
        rule,
    );
    let mut hijack = waiting.clone();
    hijack.workspace_id = other;
    hijack.status = OutboxStatus::Cancelled;
    expect_err(
        store.update_outbox(&hijack).await,
        Kind::NotFound,
        "update_outbox from another workspace",
    );
    assert_eq!(
        ok(store.get_outbox(ws, flying.id).await, "get"),
        flying,
        "the in-flight message is untouched"
    );
    assert_eq!(
        ok(store.get_outbox(ws, waiting.id).await, "get"),
        waiting,
        "the pending message is untouched"
    );
}
