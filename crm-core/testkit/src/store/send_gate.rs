//! The send gate: `begin_sends` checks and marks in order, quota grants keyed by the
//! message, and unsubscribes that cancel unsent messages and report those already
//! sending.

use chrono::{DateTime, Duration, Utc};
use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Channel, ConsentStatus, Contact, OutboxMessage, OutboxStatus, normalize_address,
};
use crm_core::store::{QuotaKey, Reschedule, SendStart, SendStartOutcome, TouchLimit};

use super::fixtures::{
    base, claim_at, consent, contact, created, new_message, ok, race, sent_record, suppression,
    token,
};

/// The counter every case here takes its units of.
fn key() -> QuotaKey {
    QuotaKey::new("send:email", base().date_naive())
}

/// A touch limit of `limit` over the day of [`base`].
fn touches(limit: u32) -> Option<TouchLimit> {
    Some(TouchLimit {
        limit,
        day_start: base() - Duration::hours(1),
        day_end: base() + Duration::hours(23),
    })
}

fn start(m: &OutboxMessage, cap: u32, touch_limit: Option<TouchLimit>) -> SendStart {
    SendStart {
        workspace_id: m.workspace_id,
        outbox_id: m.id,
        lease_token: token(m.lease.as_ref()),
        contact_id: m.contact_id.expect("gate messages have a contact"),
        channel: m.channel,
        recipient: normalize_address(&m.recipient),
        quota_key: key(),
        cap,
        touch_limit,
    }
}

/// Enqueues `n` messages to `contact` (distinct recipients) and claims them all at
/// `now`, in claim order.
async fn claimed(
    store: &DynStore,
    ws: WorkspaceId,
    contact: &Contact,
    n: usize,
    now: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    for _ in 0..n {
        let m = new_message(ws).with_contact(contact.id);
        created(store.enqueue_outbox(&m).await, "enqueue_outbox");
    }
    let claimed = ok(
        store.claim_outbox(&claim_at(ws, "gate", now)).await,
        "claim",
    );
    assert_eq!(claimed.len(), n, "every message is claimed");
    claimed
}

async fn status(store: &DynStore, m: &OutboxMessage) -> OutboxStatus {
    ok(store.get_outbox(m.workspace_id, m.id).await, "get_outbox").status
}

async fn used(store: &DynStore, ws: WorkspaceId) -> u32 {
    ok(store.quota_usage(ws, &key()).await, "quota_usage")
}

/// One call decides every start in order: lease, cancellation, touch limit (earlier
/// `Go`s of the call count), cap; a re-claimed message reuses its unit; units are
/// given back only for messages that ended unsent.
pub async fn send_gate_answers_each_start_in_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let now = base();
    let m = claimed(store, ws, &ada, 5, now).await;
    // An unsubscribe before the gate cancels the unsent message at once.
    let stopped = ok(
        store
            .add_suppression(&suppression(ws, None, &m[1].recipient))
            .await,
        "add_suppression",
    )
    .stopped;
    assert_eq!(stopped.cancelled, vec![m[1].id], "{stopped:?}");
    let mut stale = start(&m[2], 2, None);
    stale.lease_token += 1;
    let starts = [
        start(&m[0], 2, touches(2)),
        start(&m[1], 2, touches(2)),
        stale,
        start(&m[2], 2, touches(2)),
        start(&m[3], 2, touches(2)),
        start(&m[4], 2, None),
    ];
    let answers = ok(store.begin_sends(&starts, now).await, "begin_sends");
    assert_eq!(
        answers,
        vec![
            SendStartOutcome::Go,
            SendStartOutcome::NotInFlight,
            SendStartOutcome::LeaseLost,
            SendStartOutcome::Go,
            SendStartOutcome::TouchLimit,
            SendStartOutcome::OverCap,
        ],
        "one answer per start, in order"
    );
    assert_eq!(used(store, ws).await, 2, "two units taken");
    assert_eq!(status(store, &m[1]).await, OutboxStatus::Cancelled);
    assert_eq!(
        status(store, &m[3]).await,
        OutboxStatus::InFlight,
        "refused, not changed"
    );
    assert!(
        ok(store.begin_sends(&[], now).await, "empty").is_empty(),
        "no starts, no answers"
    );

    // m0 goes back to the queue after its send failed; its next claim reuses its unit.
    let back = Reschedule {
        not_before: now,
        reason: Some("provider timeout".into()),
        count_attempt: true,
    };
    ok(
        store
            .reschedule_outbox(ws, m[0].id, token(m[0].lease.as_ref()), &back)
            .await,
        "reschedule_outbox",
    );
    let later = now + Duration::minutes(1);
    let again = ok(
        store.claim_outbox(&claim_at(ws, "gate-2", later)).await,
        "claim",
    );
    assert_eq!(again.len(), 1, "{again:?}");
    let answers = ok(
        store.begin_sends(&[start(&again[0], 2, None)], later).await,
        "begin_sends",
    );
    assert_eq!(
        answers,
        vec![SendStartOutcome::Go],
        "a held unit is reused at the cap"
    );
    assert_eq!(
        used(store, ws).await,
        2,
        "no second unit for a re-claimed message"
    );

    // Units come back only from messages that ended unsent.
    ok(
        store
            .mark_outbox_sent(
                ws,
                m[0].id,
                token(again[0].lease.as_ref()),
                &sent_record(&m[0], ada.id, later),
            )
            .await,
        "mark_outbox_sent",
    );
    assert!(
        !ok(
            store.release_send_quota(ws, m[0].id, &key()).await,
            "release"
        ),
        "a sent message keeps its unit"
    );
    assert!(
        !ok(
            store.release_send_quota(ws, m[2].id, &key()).await,
            "release"
        ),
        "an in-flight message keeps its unit"
    );
    ok(
        store
            .finish_outbox(
                ws,
                m[2].id,
                token(m[2].lease.as_ref()),
                OutboxStatus::Failed,
                "configuration",
                later,
            )
            .await,
        "finish_outbox",
    );
    assert!(
        ok(
            store.release_send_quota(ws, m[2].id, &key()).await,
            "release"
        ),
        "a message that failed before the provider gives its unit back"
    );
    assert!(
        !ok(
            store.release_send_quota(ws, m[2].id, &key()).await,
            "release"
        ),
        "once"
    );
    assert_eq!(used(store, ws).await, 1);
    let answers = ok(
        store.begin_sends(&[start(&m[4], 2, None)], later).await,
        "begin_sends",
    );
    assert_eq!(
        answers,
        vec![SendStartOutcome::Go],
        "the unit given back is free again"
    );
}

/// A message that took its unit, then went back to the queue (a retry), gives the
/// unit back when an unsubscribe cancels it: it never reached the provider.
pub async fn send_gate_unsubscribes_give_back_the_units_of_what_they_cancel(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let now = base();
    let m = claimed(store, ws, &ada, 2, now).await;
    let starts = [start(&m[0], 10, None), start(&m[1], 10, None)];
    let answers = ok(store.begin_sends(&starts, now).await, "begin_sends");
    assert_eq!(answers, vec![SendStartOutcome::Go, SendStartOutcome::Go]);
    let back = Reschedule {
        not_before: now + Duration::hours(1),
        reason: Some("provider timeout".into()),
        count_attempt: true,
    };
    for sent in &m {
        ok(
            store
                .reschedule_outbox(ws, sent.id, token(sent.lease.as_ref()), &back)
                .await,
            "reschedule_outbox",
        );
    }
    assert_eq!(used(store, ws).await, 2, "a retried message keeps its unit");

    let added = ok(
        store
            .add_suppression(&suppression(ws, None, &m[0].recipient))
            .await,
        "add_suppression",
    );
    assert_eq!(
        added.stopped.cancelled,
        vec![m[0].id],
        "{:?}",
        added.stopped
    );
    assert_eq!(
        used(store, ws).await,
        1,
        "the suppression gave its unit back"
    );

    let withdrawn = ok(
        store
            .record_consent(&consent(ws, ada.id, ConsentStatus::Withdrawn, now))
            .await,
        "record_consent",
    );
    assert_eq!(
        withdrawn.stopped.cancelled,
        vec![m[1].id],
        "{:?}",
        withdrawn.stopped
    );
    assert_eq!(
        used(store, ws).await,
        0,
        "the withdrawal gave its unit back"
    );
}

/// An unsubscribe cancels the unsent messages (pending, or in flight but not yet
/// sending) and reports the ones already sending; the gate refuses the cancelled.
pub async fn send_gate_unsubscribes_report_cancelled_and_in_flight(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let now = base();
    let address = crate::store::fixtures::unique_email();
    let to = |n: &str| {
        let mut m = new_message(ws).with_contact(ada.id);
        m.recipient = if n == "upper" {
            address.to_uppercase()
        } else {
            address.clone()
        };
        m
    };
    let x = created(store.enqueue_outbox(&to("x")).await, "enqueue");
    let y = created(store.enqueue_outbox(&to("upper")).await, "enqueue");
    let m = ok(
        store.claim_outbox(&claim_at(ws, "gate", now)).await,
        "claim",
    );
    assert_eq!(m.len(), 2);
    let sending = m.iter().find(|c| c.id == x.id).expect("x claimed");
    let answers = ok(
        store.begin_sends(&[start(sending, 10, None)], now).await,
        "begin_sends",
    );
    assert_eq!(answers, vec![SendStartOutcome::Go]);
    let z = created(store.enqueue_outbox(&to("z")).await, "enqueue");
    let other = created(
        store
            .enqueue_outbox(&new_message(ws).with_contact(ada.id))
            .await,
        "enqueue",
    );

    let added = ok(
        store
            .add_suppression(&suppression(ws, Some(Channel::Email), &address))
            .await,
        "add_suppression",
    );
    let mut cancelled = vec![y.id, z.id];
    cancelled.sort_unstable();
    assert_eq!(added.stopped.cancelled, cancelled, "{:?}", added.stopped);
    assert_eq!(added.stopped.in_flight, vec![x.id], "{:?}", added.stopped);
    let y_claimed = m.iter().find(|c| c.id == y.id).expect("y claimed");
    let answers = ok(
        store.begin_sends(&[start(y_claimed, 10, None)], now).await,
        "begin_sends",
    );
    assert_eq!(answers, vec![SendStartOutcome::NotInFlight]);
    assert_eq!(status(store, &z).await, OutboxStatus::Cancelled);
    assert_eq!(
        status(store, &other).await,
        OutboxStatus::Pending,
        "another address is untouched"
    );

    // Consent: a grant stops nothing, a withdrawal stops the contact's channel.
    let granted = ok(
        store
            .record_consent(&consent(ws, ada.id, ConsentStatus::Granted, now))
            .await,
        "record_consent",
    );
    assert_eq!(granted.stopped, Default::default());
    let withdrawn = ok(
        store
            .record_consent(&consent(
                ws,
                ada.id,
                ConsentStatus::Withdrawn,
                now + Duration::minutes(1),
            ))
            .await,
        "record_consent",
    );
    assert_eq!(
        withdrawn.stopped.cancelled,
        vec![other.id],
        "{:?}",
        withdrawn.stopped
    );
    assert_eq!(
        withdrawn.stopped.in_flight,
        vec![x.id],
        "{:?}",
        withdrawn.stopped
    );
    assert_eq!(status(store, &other).await, OutboxStatus::Cancelled);
}

/// However many gate calls race for the last units, the cap is never passed.
pub async fn send_gate_concurrent_starts_never_pass_the_cap(store: &DynStore) {
    const N: usize = 12;
    const CAP: u32 = 5;
    let ws = WorkspaceId::new();
    let mut contacts = Vec::new();
    for _ in 0..N {
        contacts.push(contact(store, ws).await);
    }
    for c in &contacts {
        let m = new_message(ws).with_contact(c.id);
        created(store.enqueue_outbox(&m).await, "enqueue");
    }
    let m = ok(
        store.claim_outbox(&claim_at(ws, "gate", base())).await,
        "claim",
    );
    assert_eq!(m.len(), N);
    let answers = race(N, |i| {
        let s = start(&m[i], CAP, touches(1));
        async move { ok(store.begin_sends(&[s], base()).await, "begin_sends") }
    })
    .await;
    let go = answers.iter().flatten().filter(|a| a.is_go()).count();
    assert_eq!(go, CAP as usize, "{answers:?}");
    assert_eq!(used(store, ws).await, CAP);
}
