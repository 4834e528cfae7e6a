//! Cases for [`IntakeStore`].

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{IntakeRecordId, WorkspaceId};
use crm_core::model::{IntakeRecord, IntakeStatus, RowError};
use crm_core::store::Page;

use super::fixtures::{
    assert_pagination, at, contact, expect_err, fingerprint, new_intake, ok, unique,
};

fn row_error() -> RowError {
    RowError {
        line: Some(3),
        column: Some("email".into()),
        reason: "is not a valid address".into(),
    }
}

/// insert_intake stores Pending and Invalid rows as given; other statuses, version != 1
/// and rows failing validation are Invalid; a reused id is Conflict.
pub async fn intake_round_trip_and_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let pending = new_intake(ws, Some(fingerprint(&unique("ada"))));
    let stored = ok(store.insert_intake(&pending).await, "insert_intake");
    assert_eq!(
        stored, pending,
        "a new fingerprint is stored Pending, as given"
    );
    assert_eq!(
        ok(store.get_intake(ws, pending.id).await, "get_intake"),
        pending,
        "get_intake round trip"
    );
    let invalid = new_intake(ws, None).invalid(vec![row_error()]);
    let stored = ok(store.insert_intake(&invalid).await, "insert_intake");
    assert_eq!(stored, invalid, "an Invalid row is stored with its errors");

    for status in [IntakeStatus::Duplicate, IntakeStatus::Processed] {
        let mut row = new_intake(ws, None);
        row.status = status;
        expect_err(
            store.insert_intake(&row).await,
            Kind::Invalid,
            &format!("insert_intake with status {status} (MUST be Pending or Invalid)"),
        );
    }
    let mut v2 = new_intake(ws, None);
    v2.version = 2;
    expect_err(
        store.insert_intake(&v2).await,
        Kind::Invalid,
        "insert_intake with version 2",
    );
    let mut blank = new_intake(ws, None);
    blank.source_ref = " ".into();
    expect_err(
        store.insert_intake(&blank).await,
        Kind::Invalid,
        "insert_intake with a blank source_ref",
    );
    let mut unexplained = new_intake(ws, None);
    unexplained.status = IntakeStatus::Invalid;
    expect_err(
        store.insert_intake(&unexplained).await,
        Kind::Invalid,
        "an Invalid row without errors",
    );
    let mut same_id = new_intake(ws, None);
    same_id.id = pending.id;
    expect_err(
        store.insert_intake(&same_id).await,
        Kind::Conflict,
        "insert_intake with a reused id",
    );
    expect_err(
        store.get_intake(ws, IntakeRecordId::new()).await,
        Kind::NotFound,
        "get_intake of an unknown id",
    );
}

/// A Pending row whose fingerprint is held by a non-duplicate, non-invalid row is stored
/// Duplicate with duplicate_of naming the first; nothing is dropped.
pub async fn intake_fingerprint_dedup(store: &DynStore) {
    let ws = WorkspaceId::new();
    let print = fingerprint(&unique("ada"));
    let first = ok(
        store
            .insert_intake(&new_intake(ws, Some(print.clone())))
            .await,
        "insert_intake",
    );
    assert_eq!(
        first.status,
        IntakeStatus::Pending,
        "the first row with a fingerprint stays Pending"
    );
    for _ in 0..2 {
        let row = new_intake(ws, Some(print.clone()));
        let stored = ok(store.insert_intake(&row).await, "insert_intake");
        let mut expected = row.clone();
        expected.status = IntakeStatus::Duplicate;
        expected.duplicate_of = Some(first.id);
        assert_eq!(
            stored, expected,
            "a repeated fingerprint is stored Duplicate of the first row"
        );
        assert_eq!(
            ok(store.get_intake(ws, row.id).await, "get"),
            expected,
            "the duplicate is kept"
        );
    }
    for _ in 0..2 {
        let stored = ok(
            store.insert_intake(&new_intake(ws, None)).await,
            "insert_intake",
        );
        assert_eq!(
            stored.status,
            IntakeStatus::Pending,
            "rows without a fingerprint are never duplicates"
        );
    }
    let other_print = fingerprint(&unique("grace"));
    let invalid = new_intake(ws, Some(other_print.clone())).invalid(vec![row_error()]);
    ok(store.insert_intake(&invalid).await, "insert_intake");
    let after_invalid = ok(
        store
            .insert_intake(&new_intake(ws, Some(other_print)))
            .await,
        "insert",
    );
    assert_eq!(
        after_invalid.status,
        IntakeStatus::Pending,
        "an Invalid row does not make later rows duplicates"
    );
    let foreign = ok(
        store
            .insert_intake(&new_intake(WorkspaceId::new(), Some(print.clone())))
            .await,
        "insert",
    );
    assert_eq!(
        foreign.status,
        IntakeStatus::Pending,
        "fingerprints are unique per workspace only"
    );

    let mut processed = first.clone();
    processed.status = IntakeStatus::Processed;
    ok(store.update_intake(&processed).await, "update_intake");
    let late = ok(
        store.insert_intake(&new_intake(ws, Some(print))).await,
        "insert_intake",
    );
    assert_eq!(
        (late.status, late.duplicate_of),
        (IntakeStatus::Duplicate, Some(first.id)),
        "a processed row still holds its fingerprint (it is neither duplicate nor invalid)"
    );
}

/// update_intake is compare-and-set; list_intake filters by status and pages by id.
pub async fn intake_update_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let print = fingerprint(&unique("ada"));
    let first = ok(
        store
            .insert_intake(&new_intake(ws, Some(print.clone())))
            .await,
        "insert",
    );
    let dup = ok(
        store.insert_intake(&new_intake(ws, Some(print))).await,
        "insert",
    );
    let invalid = ok(
        store
            .insert_intake(&new_intake(ws, None).invalid(vec![row_error()]))
            .await,
        "insert",
    );
    let pending = ok(store.insert_intake(&new_intake(ws, None)).await, "insert");

    let ada = contact(store, ws).await;
    let mut processed = first.clone();
    processed.status = IntakeStatus::Processed;
    processed.contact_id = Some(ada.id);
    processed.updated_at = at(5);
    let updated = ok(store.update_intake(&processed).await, "update_intake");
    let mut expected = processed.clone();
    expected.version = 2;
    assert_eq!(
        updated, expected,
        "update_intake stores status and contact with version + 1"
    );
    assert_eq!(
        ok(store.get_intake(ws, first.id).await, "get"),
        expected,
        "get_intake sees the update"
    );
    expect_err(
        store.update_intake(&processed).await,
        Kind::VersionConflict,
        "update_intake with a stale version",
    );
    let mut blank = updated.clone();
    blank.source_ref = String::new();
    expect_err(
        store.update_intake(&blank).await,
        Kind::Invalid,
        "update_intake failing validation",
    );

    for (status, expected) in [
        (IntakeStatus::Processed, vec![first.id]),
        (IntakeStatus::Duplicate, vec![dup.id]),
        (IntakeStatus::Invalid, vec![invalid.id]),
        (IntakeStatus::Pending, vec![pending.id]),
    ] {
        let listed = ok(
            store.list_intake(ws, Some(status), Page::first(10)).await,
            "list_intake",
        );
        let listed: Vec<_> = listed.iter().map(|r| r.id).collect();
        assert_eq!(
            listed, expected,
            "list_intake with status {status} lists exactly those rows"
        );
    }
    assert_pagination(
        "list_intake(None)",
        vec![first.id, dup.id, invalid.id, pending.id],
        |r: &IntakeRecord| r.id,
        |page| store.list_intake(ws, None, page),
    )
    .await;
}

/// Another workspace can neither get, list nor update an intake row.
pub async fn intake_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let row = ok(
        store
            .insert_intake(&new_intake(ws, Some(fingerprint(&unique("x")))))
            .await,
        "insert",
    );
    expect_err(
        store.get_intake(other, row.id).await,
        Kind::NotFound,
        "get_intake from another workspace",
    );
    for status in [None, Some(IntakeStatus::Pending)] {
        let listed = ok(
            store.list_intake(other, status, Page::first(10)).await,
            "list_intake",
        );
        assert!(
            listed.is_empty(),
            "list_intake never returns another workspace's rows"
        );
    }
    let mut hijack = row.clone();
    hijack.workspace_id = other;
    hijack.status = IntakeStatus::Processed;
    expect_err(
        store.update_intake(&hijack).await,
        Kind::NotFound,
        "update_intake from another workspace",
    );
    assert_eq!(
        ok(store.get_intake(ws, row.id).await, "get"),
        row,
        "the row is unchanged"
    );
}
