//! The events of the send path, approvals, anomalies and scores (see
//! `events_emitted`), and what `finish_outbox` writes besides the message: the
//! `SendFailed` activity and the nudge of the enrollment waiting on the message.

use serde_json::json;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::events::kinds;
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    ActivityKind, Actor, ApprovalStatus, Enrollment, EnrollmentState, OutboxMessage, OutboxStatus,
    Sequence,
};
use crm_core::scoring::{ContactScore, ScoreOverride, ScoringInput, Tier, explain};
use crm_core::store::{ActivityFilter, Scope};

use super::events_emitted::{all_unrouted, no_personal_data, the_event};
use super::fixtures::{
    approval, at, base, claim_one_message, contact, created, enroll, enrolled_message, events_of,
    existing, expect_err, new_anomaly, ok, sent_record, sequence, token,
};
use super::scoring_model;

/// An enrollment waiting on its step 0 message (due again only at `at(600)`), and
/// that message claimed at [`base`].
async fn waiting_step(store: &DynStore, seq: &Sequence) -> (Enrollment, OutboxMessage) {
    let ws = seq.workspace_id;
    let e = enroll(store, seq, EnrollmentState::StepPending, Some(at(600))).await;
    created(
        store.enqueue_outbox(&enrolled_message(&e, 0)).await,
        "enqueue the step's message",
    );
    (e, claim_one_message(store, ws, base()).await)
}

/// finish_outbox appends outbox.failed / dead_lettered / cancelled with the reason;
/// for Failed and DeadLettered it records a SendFailed activity (with its
/// activity.logged); the enrollment waiting on the message becomes due at `now`.
pub async fn finish_outbox_records_the_failure_and_nudges_the_enrollment(store: &DynStore) {
    for (status, kind) in [
        (OutboxStatus::Failed, kinds::OUTBOX_FAILED),
        (OutboxStatus::DeadLettered, kinds::OUTBOX_DEAD_LETTERED),
        (OutboxStatus::Cancelled, kinds::OUTBOX_CANCELLED),
    ] {
        let ws = WorkspaceId::new();
        let seq = sequence(store, ws).await;
        let (e, flying) = waiting_step(store, &seq).await;
        let lease = token(flying.lease.as_ref());
        let now = at(7);
        ok(
            store
                .finish_outbox(ws, flying.id, lease, status, "mailbox_full", now)
                .await,
            "finish_outbox",
        );
        expect_err(
            store
                .finish_outbox(ws, flying.id, lease, status, "mailbox_full", now)
                .await,
            Kind::LeaseLost,
            "a retried finish",
        );
        let event = the_event(store, ws, kind, &flying.id.to_string()).await;
        assert_eq!(event.payload["error"], json!("mailbox_full"));
        assert_eq!(event.payload["enrollment_id"], json!(e.id));
        assert_eq!(event.payload["contact_id"], json!(e.contact_id));

        let filter = ActivityFilter {
            contact_id: Some(e.contact_id),
            kinds: vec![ActivityKind::SendFailed],
            ..ActivityFilter::default()
        };
        let failures = ok(store.list_activities(ws, &filter, 10).await, "activities");
        if status == OutboxStatus::Cancelled {
            assert!(failures.is_empty(), "a cancel is no failed send");
        } else {
            assert_eq!(failures.len(), 1, "{status}: one SendFailed activity");
            let a = &failures[0];
            assert_eq!(
                (a.channel, a.outbox_message_id, a.occurred_at),
                (Some(flying.channel), Some(flying.id), now)
            );
            assert_eq!(a.details["status"], json!(status));
            assert_eq!(a.details["attempts"], json!(1));
            assert_eq!(a.details["error"], json!("mailbox_full"));
            let logged =
                the_event(store, ws, kinds::ACTIVITY_LOGGED, &e.contact_id.to_string()).await;
            assert_eq!(logged.payload["activity_id"], json!(a.id));
        }
        let nudged = ok(store.get_enrollment(ws, e.id).await, "get_enrollment");
        assert_eq!(
            (nudged.state, nudged.next_run_at),
            (EnrollmentState::StepPending, Some(now)),
            "{status}: the waiting enrollment is due now, still waiting"
        );
        no_personal_data(store, ws, &[flying.recipient.as_str(), "Hi Ada"]).await;
        all_unrouted(store, ws).await;
    }
}

/// A message that is not its enrollment's pending step leaves the enrollment alone.
pub async fn finish_outbox_leaves_other_enrollments_alone(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let e = enroll(store, &seq, EnrollmentState::StepPending, Some(at(600))).await;
    // A message of step 3 while the enrollment waits on step 0.
    created(
        store.enqueue_outbox(&enrolled_message(&e, 3)).await,
        "enqueue",
    );
    let flying = claim_one_message(store, ws, base()).await;
    let lease = token(flying.lease.as_ref());
    ok(
        store
            .finish_outbox(ws, flying.id, lease, OutboxStatus::Failed, "x", at(7))
            .await,
        "finish_outbox",
    );
    assert_eq!(
        ok(store.get_enrollment(ws, e.id).await, "get").next_run_at,
        Some(at(600)),
        "another step's message does not move the enrollment"
    );
}

/// mark_outbox_sent appends outbox.sent, enrollment.step_sent and the activity's
/// activity.logged; update_outbox to Cancelled appends outbox.cancelled and makes the
/// waiting enrollment due at the message's updated_at.
pub async fn sends_and_cancels_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let (e, flying) = waiting_step(store, &seq).await;
    let mut sent = sent_record(&flying, e.contact_id, at(1));
    let mut moved = e.clone();
    moved.state = EnrollmentState::StepSent;
    moved.current_step = 1;
    sent.enrollment = Some(moved);
    ok(
        store
            .mark_outbox_sent(ws, flying.id, token(flying.lease.as_ref()), &sent)
            .await,
        "mark_outbox_sent",
    );
    let event = the_event(store, ws, kinds::OUTBOX_SENT, &flying.id.to_string()).await;
    assert_eq!(event.payload["step_index"], json!(0));
    let step = the_event(store, ws, kinds::ENROLLMENT_STEP_SENT, &e.id.to_string()).await;
    assert_eq!(step.payload["outbox_message_id"], json!(flying.id));
    let logged = the_event(store, ws, kinds::ACTIVITY_LOGGED, &e.contact_id.to_string()).await;
    assert_eq!(logged.payload["activity_id"], json!(sent.activity.id));

    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let e = enroll(store, &seq, EnrollmentState::StepPending, Some(at(600))).await;
    let queued = created(
        store.enqueue_outbox(&enrolled_message(&e, 0)).await,
        "enqueue",
    );
    let mut cancel = queued.clone();
    cancel.status = OutboxStatus::Cancelled;
    cancel.updated_at = at(9);
    let cancelled = ok(store.update_outbox(&cancel).await, "update_outbox");
    let event = the_event(store, ws, kinds::OUTBOX_CANCELLED, &queued.id.to_string()).await;
    assert_eq!(event.payload["enrollment_id"], json!(e.id));
    assert_eq!(
        ok(store.get_enrollment(ws, e.id).await, "get").next_run_at,
        Some(cancelled.updated_at),
        "the waiting enrollment is due when its message was cancelled"
    );
    all_unrouted(store, ws).await;
}

/// Approvals append requested (once, however often inserted), decided and expired.
pub async fn approval_changes_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let item = approval(store, ws, at(60)).await;
    let again = existing(store.insert_approval(&item).await, "insert again");
    assert_eq!(again.id, item.id);
    let requested = the_event(store, ws, kinds::APPROVAL_REQUESTED, &item.id.to_string()).await;
    assert_eq!(
        requested.payload["outbox_message_id"],
        json!(item.outbox_message_id)
    );
    let mut approve = item.clone();
    approve.status = ApprovalStatus::Approved;
    approve.decided_at = Some(at(1));
    ok(store.update_approval(&approve).await, "approve");
    let decided = the_event(store, ws, kinds::APPROVAL_DECIDED, &item.id.to_string()).await;
    assert_eq!(decided.payload["status"], json!("approved"));

    let late = approval(store, ws, at(60)).await;
    let expired = ok(
        store.expire_approvals(Scope::Workspace(ws), at(61)).await,
        "expire",
    );
    assert_eq!(expired.len(), 1);
    the_event(store, ws, kinds::APPROVAL_EXPIRED, &late.id.to_string()).await;
    assert!(
        ok(
            store.expire_approvals(Scope::Workspace(ws), at(62)).await,
            "again"
        )
        .is_empty()
    );
    assert_eq!(events_of(store, ws, kinds::APPROVAL_EXPIRED).await.len(), 1);
    all_unrouted(store, ws).await;
}

/// raise_anomaly appends anomaly.raised only when it opened one; resolving appends
/// anomaly.resolved.
pub async fn anomaly_changes_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let opened = created(store.raise_anomaly(&new_anomaly(ws, "sms")).await, "raise");
    existing(
        store.raise_anomaly(&new_anomaly(ws, "sms")).await,
        "raise again",
    );
    let raised = the_event(store, ws, kinds::ANOMALY_RAISED, &opened.id.to_string()).await;
    assert_eq!(raised.payload["rule"], json!("failure_rate"));
    let mut resolve = opened.clone();
    resolve.status = crm_core::model::AnomalyStatus::Resolved;
    resolve.resolved_at = Some(at(5));
    ok(store.update_anomaly(&resolve).await, "resolve");
    the_event(store, ws, kinds::ANOMALY_RESOLVED, &opened.id.to_string()).await;
    all_unrouted(store, ws).await;
}

/// A score or tier change appends one score.changed with the breakdown, in the same
/// call; an unchanged rewrite appends nothing; an override is a change.
pub async fn score_changes_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let mut input = ScoringInput::empty(ws, ada.id);
    input.clicks = vec![base()];
    let score = ContactScore::computed(
        ws,
        ada.id,
        explain(&scoring_model(ws), &input, base()),
        1,
        base(),
    );
    ok(
        store
            .upsert_contact_scores(ws, std::slice::from_ref(&score))
            .await,
        "upsert",
    );
    ok(
        store
            .upsert_contact_scores(ws, std::slice::from_ref(&score))
            .await,
        "same again",
    );
    let changed = the_event(store, ws, kinds::SCORE_CHANGED, &ada.id.to_string()).await;
    assert_eq!(changed.payload["score"], json!(score.total));
    assert_eq!(changed.payload["previous_score"], json!(null));
    assert_eq!(changed.payload["breakdown"], json!(score.breakdown));

    let manual = ScoreOverride {
        total: 99,
        tier: Tier::SalesReady,
        reason: "Met them at the fair".into(),
        actor: Actor::System,
        at: at(3),
    };
    ok(
        store.set_score_override(ws, ada.id, Some(&manual)).await,
        "override",
    );
    let all = events_of(store, ws, kinds::SCORE_CHANGED).await;
    assert_eq!(all.len(), 2, "the override changed the score");
    assert_eq!(all[1].payload["score"], json!(99));
    assert_eq!(all[1].payload["previous_score"], json!(score.total));
    all_unrouted(store, ws).await;
}
