//! Every state-changing store method appends the catalogue events of its change
//! ([`crm_core::events`]) in the same atomic step: contacts, accounts, deals,
//! activities, sequences and enrollments here; the outbox, approvals, anomalies and
//! scores in `events_emitted_send`.
//!
//! Each case checks the kind, subject and payload ids, that a refused or retried call
//! appends nothing more, that payloads carry no personal data, and that the events are
//! unrouted (listed by `list_unrouted_events`) for the router to pick up.

use serde_json::json;

use crm_core::DynStore;
use crm_core::events::kinds;
use crm_core::ids::WorkspaceId;
use crm_core::model::{ActivityKind, EnrollmentState, Event};
use crm_core::store::Scope;

use super::fixtures::{
    account, activity, all_events, at, base, change, contact, enroll, event_kinds, events_of,
    expect_err, new_deal, ok, pipeline, sequence,
};
use crm_core::error::StoreErrorKind as Kind;

/// The one event of `kind` in `ws`, asserting its subject.
pub(crate) async fn the_event(
    store: &DynStore,
    ws: WorkspaceId,
    kind: &str,
    subject: &str,
) -> Event {
    let found = events_of(store, ws, kind).await;
    assert_eq!(found.len(), 1, "exactly one {kind} event, found {found:?}");
    assert_eq!(found[0].subject, subject, "the subject of {kind}");
    found.into_iter().next().unwrap_or_else(|| unreachable!())
}

/// No payload of the workspace's events contains any of `secrets` (addresses, names,
/// bodies): the event log is exported by webhooks.
pub(crate) async fn no_personal_data(store: &DynStore, ws: WorkspaceId, secrets: &[&str]) {
    for event in all_events(store, ws).await {
        let text = event.payload.to_string();
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "the payload of {} carries personal data: {text}",
                event.kind
            );
        }
    }
}

/// Every event of the workspace is unrouted (the stores append them without jobs).
pub(crate) async fn all_unrouted(store: &DynStore, ws: WorkspaceId) {
    let logged: Vec<_> = all_events(store, ws).await.iter().map(|e| e.id).collect();
    let unrouted: Vec<_> = ok(
        store.list_unrouted_events(Scope::Workspace(ws), 1000).await,
        "list_unrouted_events",
    )
    .iter()
    .map(|e| e.id)
    .collect();
    assert_eq!(unrouted, logged, "events a store appends are unrouted");
}

/// Contacts, accounts, deals and activities append created/updated/stage/logged
/// events with their ids; a stale update appends nothing.
pub async fn crm_changes_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let created = the_event(store, ws, kinds::CONTACT_CREATED, &ada.id.to_string()).await;
    assert_eq!(created.payload["contact_id"], json!(ada.id));

    let mut edit = ada.clone();
    edit.title = Some("CTO".into());
    let edited = ok(store.update_contact(&edit).await, "update_contact");
    expect_err(
        store.update_contact(&edit).await,
        Kind::VersionConflict,
        "a stale update",
    );
    let updated = the_event(store, ws, kinds::CONTACT_UPDATED, &ada.id.to_string()).await;
    assert_eq!(updated.payload["fields"], json!(["title"]));
    assert_eq!(updated.payload["version"], json!(edited.version));

    let acme = account(store, ws).await;
    the_event(store, ws, kinds::ACCOUNT_CREATED, &acme.id.to_string()).await;
    let mut rename = acme.clone();
    rename.name = "Acme GmbH".into();
    ok(store.update_account(&rename).await, "update_account");
    let account_updated = the_event(store, ws, kinds::ACCOUNT_UPDATED, &acme.id.to_string()).await;
    assert_eq!(account_updated.payload["account_id"], json!(acme.id));

    let sales = pipeline(store, ws).await;
    let deal = ok(store.insert_deal(&new_deal(&sales)).await, "insert_deal");
    let deal_created = the_event(store, ws, kinds::DEAL_CREATED, &deal.id.to_string()).await;
    assert_eq!(deal_created.payload["stage_id"], json!(deal.stage_id));
    let mut advance = deal.clone();
    advance.stage_id = sales.stages[1].id;
    ok(store.update_deal(&advance).await, "update_deal");
    the_event(store, ws, kinds::DEAL_UPDATED, &deal.id.to_string()).await;
    let moved = the_event(store, ws, kinds::DEAL_STAGE_CHANGED, &deal.id.to_string()).await;
    assert_eq!(
        (&moved.payload["from"], &moved.payload["to"]),
        (&json!(sales.stages[0].id), &json!(sales.stages[1].id))
    );

    let call = activity(ws, ada.id, ActivityKind::Call, at(5));
    ok(store.record_activity(&call).await, "record_activity");
    expect_err(
        store.record_activity(&call).await,
        Kind::Conflict,
        "recording the same activity twice",
    );
    let logged = the_event(store, ws, kinds::ACTIVITY_LOGGED, &ada.id.to_string()).await;
    assert_eq!(logged.payload["activity_id"], json!(call.id));
    assert_eq!(logged.payload["kind"], json!("call"));

    let email = ada.email.as_ref().map(|e| e.as_str().to_owned());
    let mut secrets = vec!["Lovelace", "Talked about pricing"];
    secrets.extend(email.as_deref());
    no_personal_data(store, ws, &secrets).await;
    all_unrouted(store, ws).await;
}

/// Sequences append created/updated; enrollments append enrolled on insert and the
/// transition's events on every state change, by update or by change-set.
pub async fn enrollment_changes_append_their_events(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    the_event(store, ws, kinds::SEQUENCE_CREATED, &seq.id.to_string()).await;
    let mut renamed = seq.clone();
    renamed.name = "Renamed".into();
    let seq = ok(store.update_sequence(&renamed).await, "update_sequence");
    the_event(store, ws, kinds::SEQUENCE_UPDATED, &seq.id.to_string()).await;

    let e = enroll(store, &seq, EnrollmentState::Active, Some(base())).await;
    let enrolled = the_event(store, ws, kinds::ENROLLMENT_ENROLLED, &e.id.to_string()).await;
    assert_eq!(enrolled.payload["contact_id"], json!(e.contact_id));
    assert_eq!(enrolled.payload["sequence_id"], json!(seq.id));

    let mut pause = e.clone();
    pause.state = EnrollmentState::Paused;
    let paused = ok(store.update_enrollment(&pause).await, "pause");
    let event = the_event(store, ws, kinds::ENROLLMENT_PAUSED, &e.id.to_string()).await;
    assert_eq!(
        (&event.payload["from"], &event.payload["to"]),
        (&json!("active"), &json!("paused"))
    );
    let resumed = ok(
        store
            .advance_enrollment(&change(&paused, EnrollmentState::Active, None, at(1)))
            .await,
        "resume by change-set",
    );
    the_event(store, ws, kinds::ENROLLMENT_RESUMED, &e.id.to_string()).await;
    let before = event_kinds(store, ws).await;
    ok(
        store
            .advance_enrollment(&change(
                &resumed.enrollment,
                EnrollmentState::StepPending,
                None,
                at(2),
            ))
            .await,
        "a running move",
    );
    assert_eq!(
        event_kinds(store, ws).await,
        before,
        "a move between running states appends nothing (the step's events do)"
    );
    let pending = ok(store.get_enrollment(ws, e.id).await, "get_enrollment");
    ok(
        store
            .advance_enrollment(&change(&pending, EnrollmentState::Completed, None, at(3)))
            .await,
        "complete",
    );
    the_event(store, ws, kinds::ENROLLMENT_COMPLETED, &e.id.to_string()).await;
    the_event(store, ws, kinds::SEQUENCE_COMPLETED, &e.id.to_string()).await;
    expect_err(
        store
            .advance_enrollment(&change(&pending, EnrollmentState::Completed, None, at(3)))
            .await,
        Kind::VersionConflict,
        "a retried change-set",
    );
    assert_eq!(
        events_of(store, ws, kinds::ENROLLMENT_COMPLETED)
            .await
            .len(),
        1,
        "a refused retry appends nothing"
    );
    all_unrouted(store, ws).await;
}
