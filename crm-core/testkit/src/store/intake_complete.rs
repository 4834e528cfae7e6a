//! Cases for [`IntakeStore::complete_intake`](crm_core::store::IntakeStore::complete_intake):
//! a processed row's writes land together or not at all.

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{Contact, FieldProvenance, IntakeRecord, IntakeSource, IntakeStatus};
use crm_core::store::{ContactWrite, IntakeCompletion, Page, Scope};

use super::fixtures::{
    all_events, at, contact, expect_err, new_contact, new_event, new_intake, ok, unique_email,
};

/// A pending row and the completion that creates its contact.
async fn pending_row(store: &DynStore, ws: WorkspaceId) -> (IntakeRecord, IntakeCompletion) {
    let row = ok(
        store.insert_intake(&new_intake(ws, None)).await,
        "insert_intake",
    );
    let mut created = new_contact(ws, &unique_email());
    created.id = ContactId::from_uuid(row.id.as_uuid());
    let mut done = row.clone();
    done.status = IntakeStatus::Processed;
    done.contact_id = Some(created.id);
    done.updated_at = at(1);
    let completion = IntakeCompletion {
        provenance: vec![FieldProvenance {
            workspace_id: ws,
            contact_id: created.id,
            field: "email".into(),
            source: IntakeSource::Csv,
            source_ref: "leads.csv".into(),
            intake_id: row.id,
            recorded_at: at(1),
        }],
        event: new_event(ws, &format!("intake:{}", row.id)),
        contact: ContactWrite::Create(created),
        intake: done,
    };
    (row, completion)
}

async fn nothing_written(store: &DynStore, ws: WorkspaceId, row: &IntakeRecord, why: &str) {
    let stored = ok(store.get_intake(ws, row.id).await, "get_intake");
    assert_eq!(
        stored.status,
        IntakeStatus::Pending,
        "{why}: the row stays pending"
    );
    let own = ContactId::from_uuid(row.id.as_uuid());
    expect_err(store.get_contact(ws, own).await, Kind::NotFound, why);
    assert!(
        ok(store.list_field_provenance(ws, own).await, "provenance").is_empty(),
        "{why}: no provenance"
    );
    // Only the `contact.created` of contacts the case inserted itself (the
    // completion's own event has another subject).
    let set_up: Vec<String> = ok(store.list_contacts(ws, Page::first(100)).await, "contacts")
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert!(
        all_events(store, ws)
            .await
            .iter()
            .all(|e| e.kind == "contact.created" && set_up.contains(&e.subject)),
        "{why}: no event"
    );
}

/// A completion writes the contact, its provenance, its event and the processed row;
/// running it again is refused on the row's version and changes nothing.
pub async fn complete_intake_writes_everything(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (row, completion) = pending_row(store, ws).await;
    let stored = ok(store.complete_intake(&completion).await, "complete_intake");
    assert_eq!(stored.status, IntakeStatus::Processed);
    assert_eq!(
        stored.version,
        row.version + 1,
        "compare-and-set bumps the version"
    );
    let own = ContactId::from_uuid(row.id.as_uuid());
    let created: Contact = ok(store.get_contact(ws, own).await, "get_contact");
    assert_eq!(stored.contact_id, Some(created.id));
    assert_eq!(
        ok(store.list_field_provenance(ws, own).await, "provenance").len(),
        1
    );
    assert_eq!(
        ok(
            store.list_events(Scope::Workspace(ws), 0, 10).await,
            "events"
        )
        .len(),
        1
    );
    expect_err(
        store.complete_intake(&completion).await,
        Kind::VersionConflict,
        "a second completion of the same row",
    );
    assert_eq!(
        ok(store.list_contacts(ws, Page::first(10)).await, "contacts").len(),
        1,
        "no second contact"
    );
}

/// When any part is refused (a stale row, a stale contact, a taken email, a part from
/// another workspace), nothing of the completion is written.
pub async fn complete_intake_is_all_or_nothing(store: &DynStore) {
    let ws = WorkspaceId::new();

    let (row, mut stale_row) = pending_row(store, ws).await;
    stale_row.intake.version += 5;
    expect_err(
        store.complete_intake(&stale_row).await,
        Kind::VersionConflict,
        "a stale intake row",
    );
    nothing_written(store, ws, &row, "stale row").await;
    // The rules that need no stored row come first, in every store.
    let mut stale_and_foreign = stale_row.clone();
    stale_and_foreign.event = new_event(WorkspaceId::new(), "elsewhere");
    expect_err(
        store.complete_intake(&stale_and_foreign).await,
        Kind::Invalid,
        "a stale row with a part of another workspace",
    );
    nothing_written(store, ws, &row, "stale row, foreign event").await;

    let taken_ws = WorkspaceId::new();
    let existing = contact(store, taken_ws).await;
    let (row, mut taken) = pending_row(store, taken_ws).await;
    if let ContactWrite::Create(c) = &mut taken.contact {
        c.email = existing.email.clone();
    }
    expect_err(
        store.complete_intake(&taken).await,
        Kind::Conflict,
        "an email another contact holds",
    );
    let stored = ok(store.get_intake(taken_ws, row.id).await, "get_intake");
    assert_eq!(
        stored.status,
        IntakeStatus::Pending,
        "taken email: row stays pending"
    );
    assert_eq!(
        ok(
            store.list_contacts(taken_ws, Page::first(10)).await,
            "contacts"
        )
        .len(),
        1,
        "taken email: no contact created"
    );

    let ws = WorkspaceId::new();
    let (row, mut foreign) = pending_row(store, ws).await;
    foreign.event = new_event(WorkspaceId::new(), "elsewhere");
    expect_err(
        store.complete_intake(&foreign).await,
        Kind::Invalid,
        "an event of another workspace",
    );
    nothing_written(store, ws, &row, "foreign event").await;

    let ws = WorkspaceId::new();
    let merged_into = contact(store, ws).await;
    let (row, mut stale_contact) = pending_row(store, ws).await;
    let mut update = merged_into.clone();
    update.title = Some("CTO".into());
    update.version += 3;
    stale_contact.contact = ContactWrite::Update(update);
    stale_contact.provenance[0].contact_id = merged_into.id;
    stale_contact.intake.contact_id = Some(merged_into.id);
    expect_err(
        store.complete_intake(&stale_contact).await,
        Kind::VersionConflict,
        "a contact changed meanwhile",
    );
    nothing_written(store, ws, &row, "stale contact").await;
    assert_eq!(
        ok(store.get_contact(ws, merged_into.id).await, "get_contact").title,
        merged_into.title,
        "the contact is unchanged"
    );
}
