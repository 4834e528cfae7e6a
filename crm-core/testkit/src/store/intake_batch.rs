//! Cases for batched intake inserts and per-field provenance on [`IntakeStore`].
//!
//! [`IntakeStore`]: crm_core::store::IntakeStore

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, IntakeRecordId, WorkspaceId};
use crm_core::model::{FieldProvenance, IntakeRecord, IntakeSource, IntakeStatus, RowError};
use crm_core::store::{MAX_INTAKE_BATCH, Page};

use super::fixtures::{
    at, base, contact, expect_err, fingerprint, new_account, new_contact, new_intake, ok, race,
    unique, unique_domain, unique_email,
};

fn reason() -> RowError {
    RowError {
        line: Some(4),
        column: Some("phone".into()),
        reason: "is not a phone number".into(),
    }
}

/// insert_intake_batch keeps the first row of a fingerprint pending (an older stored
/// row, else the first in the batch) and stores later ones as its duplicates, in input
/// order; invalid rows keep their reasons; rows without fingerprint stay pending.
/// Another workspace's fingerprints never make a row a duplicate.
pub async fn intake_batch_dedups_by_fingerprint(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (a, b) = (fingerprint(&unique("a")), fingerprint(&unique("b")));
    let older = ok(
        store.insert_intake(&new_intake(ws, Some(a.clone()))).await,
        "insert_intake",
    );
    let batch = vec![
        new_intake(ws, Some(a.clone())),
        new_intake(ws, Some(b.clone())),
        new_intake(ws, Some(b.clone())),
        new_intake(ws, None).invalid(vec![reason()]),
        new_intake(ws, None),
    ];
    let stored = ok(
        store.insert_intake_batch(ws, batch.clone()).await,
        "insert_intake_batch",
    );
    let ids: Vec<IntakeRecordId> = stored.iter().map(|r| r.id).collect();
    let want: Vec<IntakeRecordId> = batch.iter().map(|r| r.id).collect();
    assert_eq!(ids, want, "rows come back in input order");
    let statuses: Vec<IntakeStatus> = stored.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![
            IntakeStatus::Duplicate,
            IntakeStatus::Pending,
            IntakeStatus::Duplicate,
            IntakeStatus::Invalid,
            IntakeStatus::Pending,
        ],
        "first of a fingerprint wins, later ones are duplicates"
    );
    assert_eq!(
        stored[0].duplicate_of,
        Some(older.id),
        "duplicate of the older row"
    );
    assert_eq!(
        stored[2].duplicate_of,
        Some(batch[1].id),
        "duplicate of the earlier row in the same batch"
    );
    assert_eq!(
        stored[3].errors,
        vec![reason()],
        "invalid rows keep their reasons"
    );
    for (row, sent) in stored.iter().zip(&batch) {
        let read = ok(store.get_intake(ws, row.id).await, "get_intake");
        assert_eq!(&read, row, "batch rows read back as returned");
        assert_eq!(read.raw, sent.raw, "raw rows are stored untouched");
        assert_eq!(read.line, sent.line);
    }
    let all = ok(
        store.list_intake(ws, None, Page::first(100)).await,
        "list_intake",
    );
    assert_eq!(all.len(), 6, "nothing is dropped");

    let other = WorkspaceId::new();
    let theirs = ok(
        store
            .insert_intake_batch(other, vec![new_intake(other, Some(a))])
            .await,
        "insert_intake_batch in another workspace",
    );
    assert_eq!(
        theirs[0].status,
        IntakeStatus::Pending,
        "fingerprints are per workspace"
    );
    assert!(
        ok(
            store.insert_intake_batch(ws, Vec::new()).await,
            "empty batch"
        )
        .is_empty(),
        "an empty batch stores nothing"
    );
}

/// A batch with a bad row stores nothing: invalid rows, rows of another workspace,
/// reused ids (Conflict) and batches over 1000 rows are refused as a whole.
pub async fn intake_batch_is_all_or_nothing(store: &DynStore) {
    let ws = WorkspaceId::new();
    let good = new_intake(ws, Some(fingerprint(&unique("g"))));
    let mut blank = new_intake(ws, None);
    blank.source_ref = " ".into();
    expect_err(
        store
            .insert_intake_batch(ws, vec![good.clone(), blank])
            .await,
        Kind::Invalid,
        "a batch with a blank source_ref",
    );
    let foreign = new_intake(WorkspaceId::new(), None);
    expect_err(
        store
            .insert_intake_batch(ws, vec![good.clone(), foreign])
            .await,
        Kind::Invalid,
        "a batch with another workspace's row",
    );
    let stored = ok(store.insert_intake(&new_intake(ws, None)).await, "insert");
    let mut reused = new_intake(ws, None);
    reused.id = stored.id;
    expect_err(
        store
            .insert_intake_batch(ws, vec![good.clone(), reused])
            .await,
        Kind::Conflict,
        "a batch reusing a stored id",
    );
    expect_err(
        store
            .insert_intake_batch(ws, vec![good.clone(), good.clone()])
            .await,
        Kind::Conflict,
        "a batch repeating an id",
    );
    let big: Vec<_> = (0..=MAX_INTAKE_BATCH)
        .map(|_| new_intake(ws, None))
        .collect();
    expect_err(
        store.insert_intake_batch(ws, big).await,
        Kind::Invalid,
        "a batch over MAX_INTAKE_BATCH rows",
    );
    expect_err(
        store.get_intake(ws, good.id).await,
        Kind::NotFound,
        "no row of a refused batch is stored",
    );
    let listed = ok(store.list_intake(ws, None, Page::first(10)).await, "list");
    assert_eq!(listed.len(), 1, "only the single insert is stored");
}

fn provenance(
    ws: WorkspaceId,
    contact_id: ContactId,
    intake_id: IntakeRecordId,
    field: &str,
    minute: i64,
) -> FieldProvenance {
    FieldProvenance {
        workspace_id: ws,
        contact_id,
        field: field.into(),
        source: IntakeSource::Form,
        source_ref: "signup".into(),
        intake_id,
        recorded_at: at(minute),
    }
}

/// upsert_field_provenance keeps one row per (contact, field), the latest write
/// winning; list_field_provenance returns a contact's rows by field name. Unknown
/// contacts or intake rows are InvalidReference; other workspaces see nothing.
pub async fn field_provenance_round_trip_and_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let c = contact(store, ws).await;
    let first = ok(store.insert_intake(&new_intake(ws, None)).await, "insert");
    let second = ok(store.insert_intake(&new_intake(ws, None)).await, "insert");
    let rows = vec![
        provenance(ws, c.id, first.id, "phone", 1),
        provenance(ws, c.id, first.id, "email", 1),
    ];
    ok(
        store.upsert_field_provenance(ws, &rows).await,
        "upsert_field_provenance",
    );
    ok(
        store.upsert_field_provenance(ws, &rows).await,
        "upsert_field_provenance again (idempotent)",
    );
    let mut later = provenance(ws, c.id, second.id, "phone", 5);
    later.source = IntakeSource::Csv;
    later.source_ref = "leads.csv".into();
    ok(
        store
            .upsert_field_provenance(ws, std::slice::from_ref(&later))
            .await,
        "upsert a later write of phone",
    );
    let listed = ok(store.list_field_provenance(ws, c.id).await, "list");
    assert_eq!(
        listed,
        vec![rows[1].clone(), later],
        "one row per field, by field name, the latest write winning"
    );

    let other = WorkspaceId::new();
    assert!(
        ok(
            store.list_field_provenance(other, c.id).await,
            "list elsewhere"
        )
        .is_empty(),
        "another workspace sees no provenance"
    );
    expect_err(
        store
            .upsert_field_provenance(other, &[provenance(other, c.id, first.id, "x", 1)])
            .await,
        Kind::InvalidReference,
        "provenance for another workspace's contact",
    );
    expect_err(
        store
            .upsert_field_provenance(ws, &[provenance(ws, ContactId::new(), first.id, "x", 1)])
            .await,
        Kind::InvalidReference,
        "provenance for an unknown contact",
    );
    expect_err(
        store
            .upsert_field_provenance(ws, &[provenance(other, c.id, first.id, "x", 1)])
            .await,
        Kind::Invalid,
        "a row of another workspace in the batch",
    );
    expect_err(
        store
            .upsert_field_provenance(ws, &[provenance(ws, c.id, first.id, " ", 1)])
            .await,
        Kind::Invalid,
        "a blank field name",
    );
    assert_eq!(
        ok(store.list_field_provenance(ws, c.id).await, "list").len(),
        2,
        "refused writes change nothing"
    );
}

/// list_account_contacts returns the account's contacts only, ascending by id and
/// paged; another workspace (or an unknown account) sees none.
pub async fn account_contacts_are_scoped(store: &DynStore) {
    let ws = WorkspaceId::new();
    let account = ok(
        store
            .insert_account(&new_account(ws, &unique_domain()))
            .await,
        "insert_account",
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut c = new_contact(ws, &unique_email());
        c.account_id = Some(account.id);
        ids.push(ok(store.insert_contact(&c).await, "insert_contact").id);
    }
    contact(store, ws).await; // not in the account
    ids.sort();
    let first = ok(
        store
            .list_account_contacts(ws, account.id, Page::first(2))
            .await,
        "list_account_contacts",
    );
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[..2].to_vec(),
        "ascending by id, limited"
    );
    let rest = ok(
        store
            .list_account_contacts(ws, account.id, Page::after(ids[1], 10))
            .await,
        "list_account_contacts, next page",
    );
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert!(
        ok(
            store
                .list_account_contacts(WorkspaceId::new(), account.id, Page::first(10))
                .await,
            "list elsewhere",
        )
        .is_empty(),
        "another workspace sees none"
    );
}

/// Concurrent batches sharing fingerprints leave exactly one pending row per
/// fingerprint; every other row is a duplicate of it, and no row is lost.
pub async fn concurrent_intake_batches_keep_one_pending(store: &DynStore) {
    const BATCHES: usize = 8;
    let ws = WorkspaceId::new();
    let prints: Vec<_> = (0..5)
        .map(|i| fingerprint(&unique(&format!("p{i}"))))
        .collect();
    let prints = &prints;
    let stored = race(BATCHES, |_| async move {
        let batch: Vec<_> = prints
            .iter()
            .map(|p| new_intake(ws, Some(p.clone())))
            .collect();
        ok(
            store.insert_intake_batch(ws, batch.clone()).await,
            "insert_intake_batch",
        )
    })
    .await;
    let all: Vec<_> = stored.into_iter().flatten().collect();
    assert_eq!(all.len(), BATCHES * prints.len(), "no row is lost");
    for p in prints {
        let same: Vec<_> = all
            .iter()
            .filter(|r| r.fingerprint.as_ref() == Some(p))
            .collect();
        let pending: Vec<_> = same
            .iter()
            .filter(|r| r.status == IntakeStatus::Pending)
            .collect();
        assert_eq!(pending.len(), 1, "one pending row per fingerprint");
        let first = pending[0].id;
        assert!(
            same.iter()
                .all(|r| r.id == first || r.duplicate_of == Some(first)),
            "every other row is a duplicate of the pending one"
        );
    }
}

/// Raw values, source references and row errors with separators, quotes, line breaks,
/// backslashes, a lone `\.`, empty strings and non-ASCII text are stored exactly (a
/// backend that bulk-loads text must escape all of it).
pub async fn intake_batch_keeps_awkward_text_exactly(store: &DynStore) {
    let ws = WorkspaceId::new();
    let awkward = [
        "a,b;c\tq",
        "say \"hi\"",
        "two\nlines\r\n",
        "\\.",
        "x\n\\.\ny",
        "back\\slash \\N",
        "",
        "Zoë – 東京 🚀",
    ];
    let raw = serde_json::Value::Object(
        awkward
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("col {i}, \"x\""), serde_json::Value::from(*v)))
            .collect(),
    );
    let good = IntakeRecord::new(
        ws,
        IntakeSource::Webhook,
        "hook, \"v2\"\n\\.\nend",
        raw.clone(),
        Some(fingerprint(&unique("awkward"))),
        base(),
    )
    .expect("valid intake row");
    let bad = IntakeRecord::new(ws, IntakeSource::Csv, "x.csv", raw, None, base())
        .expect("valid intake row")
        .with_line(7)
        .invalid(vec![RowError {
            line: Some(7),
            column: Some("e,mail \"1\"".into()),
            reason: "not an email:\n\\. \"\" ,".into(),
        }]);
    let stored = ok(
        store
            .insert_intake_batch(ws, vec![good.clone(), bad.clone()])
            .await,
        "insert_intake_batch",
    );
    assert_eq!(stored, vec![good.clone(), bad.clone()], "answered as given");
    for row in [good, bad] {
        assert_eq!(
            ok(store.get_intake(ws, row.id).await, "get_intake"),
            row,
            "read back exactly"
        );
    }
    // No store can hold U+0000 everywhere (PostgreSQL text and jsonb cannot), so every
    // store refuses it; intake sources replace it before rows get here.
    let mut nul = new_intake(ws, None);
    nul.raw = serde_json::json!({ "name": "A\0da" });
    expect_err(
        store.insert_intake_batch(ws, vec![nul.clone()]).await,
        Kind::Invalid,
        "a raw value with a NUL character",
    );
    expect_err(
        store.insert_intake(&nul).await,
        Kind::Invalid,
        "a raw value with a NUL character, one row",
    );
    // A line number past what a signed 64-bit column holds is refused alike.
    let far = new_intake(ws, None).with_line(u64::MAX);
    expect_err(
        store.insert_intake_batch(ws, vec![far.clone()]).await,
        Kind::Invalid,
        "a line number past i64::MAX",
    );
    expect_err(
        store.insert_intake(&far).await,
        Kind::Invalid,
        "a line number past i64::MAX, one row",
    );
}
