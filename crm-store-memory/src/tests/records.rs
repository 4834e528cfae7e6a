//! Versioned records: CAS, uniqueness, references, tenant scoping, paging.

use chrono::Duration;
use crm_core::StoreErrorKind::{Conflict, Invalid, InvalidReference, NotFound, VersionConflict};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{
    Account, Activity, ActivityKind, Anomaly, AnomalyStatus, Channel, Consent, ConsentStatus, Deal,
    Enrollment, EnrollmentState, Fingerprint, IntakeRecord, IntakeSource, IntakeStatus, NewAccount,
    NewDeal, Pipeline, RowError, Severity, Stage, Suppression, SuppressionReason,
};
use crm_core::store::{
    AccountStore, ActivityFilter, ActivityStore, AnomalyStore, ComplianceStore, ContactStore,
    DealStore, IntakeStore, Page, SequenceStore,
};
use crm_core::{Currency, EmailAddress, Money, StoreError};

use super::{assert_kind, contact, sequence, stored_contact, t0};
use crate::MemoryStore;
use crm_core::store::ComplianceStoreExt;

#[tokio::test]
async fn contacts_use_compare_and_set() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let mut c = contact(ws, "ada@example.com");
    c.version = 2;
    assert_kind(store.insert_contact(&c).await, Invalid);
    c.version = 1;
    let v1 = store.insert_contact(&c).await.unwrap();
    assert_kind(store.insert_contact(&c).await, Conflict);

    let mut edit = v1.clone();
    edit.title = Some("CTO".into());
    edit.created_at = t0() + Duration::days(1);
    let v2 = store.update_contact(&edit).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_at, v1.created_at, "created_at is kept");
    assert_eq!(store.get_contact(ws, c.id).await.unwrap(), v2);

    match store.update_contact(&edit).await {
        Err(StoreError::VersionConflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let mut missing = v2.clone();
    missing.id = ContactId::new();
    assert_kind(store.update_contact(&missing).await, NotFound);
    let mut invalid = v2.clone();
    invalid.first_name.clear();
    invalid.email = None;
    assert_kind(store.update_contact(&invalid).await, Invalid);
}

#[tokio::test]
async fn emails_are_unique_case_insensitively_and_references_are_checked() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ada = stored_contact(&store, ws, "Ada@Example.com").await;
    assert_kind(
        store.insert_contact(&contact(ws, "ada@example.com")).await,
        Conflict,
    );
    let found = store
        .find_contact_by_email(ws, &EmailAddress::parse("ADA@example.COM").unwrap())
        .await
        .unwrap();
    assert_eq!(found.map(|c| c.id), Some(ada.id));

    // Moving the email frees the old one.
    let mut edit = ada.clone();
    edit.email = Some(EmailAddress::parse("lovelace@example.com").unwrap());
    let ada = store.update_contact(&edit).await.unwrap();
    stored_contact(&store, ws, "ada@example.com").await;
    let mut clash = ada.clone();
    clash.email = Some(EmailAddress::parse("ADA@example.com").unwrap());
    assert_kind(store.update_contact(&clash).await, Conflict);

    let mut c = contact(ws, "grace@example.com");
    c.account_id = Some(crm_core::ids::AccountId::new());
    assert_kind(store.insert_contact(&c).await, InvalidReference);

    let acme = NewAccount {
        name: "Acme".into(),
        domain: Some("acme.io".into()),
        ..Default::default()
    };
    let account = store
        .insert_account(&Account::create(ws, acme.clone(), t0()).unwrap())
        .await
        .unwrap();
    assert_kind(
        store
            .insert_account(&Account::create(ws, acme.clone(), t0()).unwrap())
            .await,
        Conflict,
    );
    c.account_id = Some(account.id);
    store.insert_contact(&c).await.unwrap();
    // The same domain in another workspace is fine.
    let other = WorkspaceId::new();
    store
        .insert_account(&Account::create(other, acme, t0()).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn other_workspaces_look_like_missing_rows() {
    let store = MemoryStore::new();
    let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
    let ada = stored_contact(&store, a, "ada@example.com").await;
    assert_kind(store.get_contact(b, ada.id).await, NotFound);
    let mut foreign = ada.clone();
    foreign.workspace_id = b;
    assert_kind(store.update_contact(&foreign).await, NotFound);
    assert!(
        store
            .list_contacts(b, Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    let email = ada.email.clone().unwrap();
    assert!(
        store
            .find_contact_by_email(b, &email)
            .await
            .unwrap()
            .is_none()
    );
    // The same email may exist once per workspace.
    stored_contact(&store, b, "ada@example.com").await;
    let activity = Activity::for_contact(b, ada.id, ActivityKind::Note, "hello", t0()).unwrap();
    assert_kind(store.record_activity(&activity).await, InvalidReference);
    assert_eq!(store.get_contact(a, ada.id).await.unwrap(), ada);
}

#[tokio::test]
async fn pages_are_ascending_and_exclusive() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            stored_contact(&store, ws, &format!("c{i}@example.com"))
                .await
                .id,
        );
    }
    ids.sort();
    let first = store.list_contacts(ws, Page::first(2)).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), ids[..2]);
    let rest = store
        .list_contacts(ws, Page::after(ids[1], 10))
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), ids[2..]);
    assert_kind(store.list_contacts(ws, Page::first(0)).await, Invalid);
    assert_kind(store.list_contacts(ws, Page::first(1001)).await, Invalid);
}

#[tokio::test]
async fn deals_need_a_stage_of_their_pipeline() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let lead = Stage::open("Lead", 10).unwrap();
    let pipeline = Pipeline::create(ws, "Sales", vec![lead.clone()], t0()).unwrap();
    let input = |stage_id| NewDeal {
        pipeline_id: pipeline.id,
        stage_id,
        name: "Big".into(),
        amount: Money::zero(Currency::new("EUR").unwrap()),
        account_id: None,
        contact_id: None,
        owner_id: None,
        expected_close: None,
    };
    let deal = Deal::create(ws, input(lead.id), t0()).unwrap();
    assert_kind(store.insert_deal(&deal).await, InvalidReference);
    store.insert_pipeline(&pipeline).await.unwrap();
    let stray = Deal::create(ws, input(Stage::open("X", 1).unwrap().id), t0()).unwrap();
    assert_kind(store.insert_deal(&stray).await, Invalid);
    let deal = store.insert_deal(&deal).await.unwrap();
    let mut moved = deal.clone();
    moved.stage_id = stray.stage_id;
    assert_kind(store.update_deal(&moved).await, Invalid);
    let mut renamed = deal.clone();
    renamed.name = "Bigger".into();
    assert_eq!(store.update_deal(&renamed).await.unwrap().version, 2);
    let listed = store
        .list_deals(ws, Some(pipeline.id), Page::first(10))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn activities_are_newest_first_and_filtered() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ada = stored_contact(&store, ws, "ada@example.com").await;
    let mut recorded = Vec::new();
    for (i, kind) in [ActivityKind::Note, ActivityKind::Call, ActivityKind::Note]
        .into_iter()
        .enumerate()
    {
        let at = t0() + Duration::hours(i64::try_from(i).unwrap());
        let a = Activity::for_contact(ws, ada.id, kind, "x", at).unwrap();
        recorded.push(store.record_activity(&a).await.unwrap());
    }
    // A tie on occurred_at is broken by the greater id first.
    let tie = Activity::for_contact(ws, ada.id, ActivityKind::Note, "y", recorded[2].occurred_at)
        .unwrap();
    let tie = store.record_activity(&tie).await.unwrap();
    assert_kind(store.record_activity(&tie).await, Conflict);
    let all = store
        .list_activities(ws, &ActivityFilter::default(), 10)
        .await
        .unwrap();
    let order: Vec<_> = all.iter().map(|a| a.id).collect();
    assert_eq!(
        order,
        vec![tie.id, recorded[2].id, recorded[1].id, recorded[0].id]
    );
    let notes = ActivityFilter {
        kinds: vec![ActivityKind::Note],
        since: Some(t0()),
        until: Some(recorded[2].occurred_at),
        ..Default::default()
    };
    assert_eq!(store.count_activities(ws, &notes).await.unwrap(), 1);
    assert_kind(
        store
            .list_activities(ws, &ActivityFilter::default(), 0)
            .await,
        Invalid,
    );
}

#[tokio::test]
async fn suppressions_are_normalised_and_all_channels_win() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let email = Suppression::new(
        ws,
        Some(Channel::Email),
        "ada@example.com",
        SuppressionReason::Bounced,
        t0(),
    )
    .unwrap();
    assert!(
        store
            .add_suppression(&email)
            .await
            .map(|r| r.result)
            .unwrap()
            .created
    );
    let mut again = email.clone();
    again.id = crm_core::ids::SuppressionId::new();
    again.address = " ADA@example.com ".into();
    let second = store
        .add_suppression(&again)
        .await
        .map(|r| r.result)
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.value, email);
    let found = store
        .find_suppression(ws, Channel::Email, "Ada@Example.com")
        .await
        .unwrap();
    assert_eq!(found.map(|s| s.id), Some(email.id));

    let all =
        Suppression::new(ws, None, "ada@example.com", SuppressionReason::Manual, t0()).unwrap();
    store.add_suppression(&all).await.map(|r| r.result).unwrap();
    let found = store
        .find_suppression(ws, Channel::Email, "ada@example.com")
        .await
        .unwrap();
    assert_eq!(found.map(|s| s.id), Some(all.id));
    assert!(
        store
            .remove_suppression(ws, None, "ADA@example.com")
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_suppression(ws, None, "ada@example.com")
            .await
            .unwrap()
    );
    let found = store
        .find_suppression(ws, Channel::Email, "ada@example.com")
        .await
        .unwrap();
    assert_eq!(found.map(|s| s.id), Some(email.id));
    assert!(
        store
            .find_suppression(WorkspaceId::new(), Channel::Email, "ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_latest_consent_is_in_force() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ada = stored_contact(&store, ws, "ada@example.com").await;
    let consent = |status, at| Consent::new(ws, ada.id, Channel::Email, status, "form", at);
    let granted = consent(ConsentStatus::Granted, t0()).unwrap();
    let withdrawn = consent(ConsentStatus::Withdrawn, t0() + Duration::hours(1)).unwrap();
    store
        .record_consent(&withdrawn)
        .await
        .map(|r| r.result)
        .unwrap();
    store
        .record_consent(&granted)
        .await
        .map(|r| r.result)
        .unwrap();
    let current = store
        .current_consent(ws, ada.id, Channel::Email)
        .await
        .unwrap();
    assert_eq!(current.map(|c| c.status), Some(ConsentStatus::Withdrawn));
    let stray = Consent::new(
        ws,
        ContactId::new(),
        Channel::Email,
        ConsentStatus::Granted,
        "x",
        t0(),
    )
    .unwrap();
    assert_kind(
        store.record_consent(&stray).await.map(|r| r.result),
        InvalidReference,
    );
}

#[tokio::test]
async fn intake_keeps_one_pending_row_per_fingerprint() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let fp = Fingerprint::compute(Some("ada@example.com"), None, None);
    let row = || {
        IntakeRecord::new(
            ws,
            IntakeSource::Csv,
            "a.csv",
            serde_json::json!({}),
            Some(fp.clone()),
            t0(),
        )
        .unwrap()
    };
    let first = store.insert_intake(&row()).await.unwrap();
    assert_eq!(first.status, IntakeStatus::Pending);
    let dup = store.insert_intake(&row()).await.unwrap();
    assert_eq!(dup.status, IntakeStatus::Duplicate);
    assert_eq!(dup.duplicate_of, Some(first.id));
    let bad = row().invalid(vec![RowError {
        line: Some(3),
        column: None,
        reason: "no email".into(),
    }]);
    assert_eq!(
        store.insert_intake(&bad).await.unwrap().status,
        IntakeStatus::Invalid
    );
    let mut processed = row();
    processed.status = IntakeStatus::Processed;
    assert_kind(store.insert_intake(&processed).await, Invalid);

    // A processed row still blocks; a duplicate cannot be turned into a second primary.
    let mut done = first.clone();
    done.status = IntakeStatus::Processed;
    store.update_intake(&done).await.unwrap();
    assert_eq!(
        store.insert_intake(&row()).await.unwrap().duplicate_of,
        Some(first.id)
    );
    let mut promote = dup.clone();
    promote.status = IntakeStatus::Pending;
    assert_kind(store.update_intake(&promote).await, Conflict);
    let other = WorkspaceId::new();
    let mut elsewhere = row();
    elsewhere.workspace_id = other;
    assert_eq!(
        store.insert_intake(&elsewhere).await.unwrap().status,
        IntakeStatus::Pending
    );
}

#[tokio::test]
async fn one_running_enrollment_per_contact_and_sequence() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let ada = stored_contact(&store, ws, "ada@example.com").await;
    let seq = store.insert_sequence(&sequence(ws)).await.unwrap();
    let e1 = Enrollment::new(ws, seq.id, 1, ada.id, t0());
    assert_kind(
        store
            .insert_enrollment(&Enrollment::new(ws, seq.id, 1, ContactId::new(), t0()))
            .await,
        InvalidReference,
    );
    let e1 = store.insert_enrollment(&e1).await.unwrap();
    let e2 = Enrollment::new(ws, seq.id, 1, ada.id, t0());
    assert_kind(store.insert_enrollment(&e2).await, Conflict);

    let mut replied = e1.clone();
    replied.state = EnrollmentState::Replied;
    let replied = store.update_enrollment(&replied).await.unwrap();
    let e2 = store.insert_enrollment(&e2).await.unwrap();
    let mut back = replied.clone();
    back.state = EnrollmentState::Active;
    assert_kind(store.update_enrollment(&back).await, Conflict);
    assert_kind(store.update_enrollment(&e1).await, VersionConflict);

    let due = store.list_due_enrollments(ws, t0(), 10).await.unwrap();
    assert_eq!(due.iter().map(|e| e.id).collect::<Vec<_>>(), vec![e2.id]);
    assert!(
        store
            .list_due_enrollments(ws, t0() - Duration::seconds(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn open_anomalies_are_deduplicated() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let raise =
        || Anomaly::new(ws, "failure_rate", Severity::Warning, "email", "high", t0()).unwrap();
    let first = store.raise_anomaly(&raise()).await.unwrap();
    assert!(first.created);
    let again = store.raise_anomaly(&raise()).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.value.id, first.value.id);

    let mut resolved = first.value.clone();
    resolved.status = AnomalyStatus::Resolved;
    let resolved = store.update_anomaly(&resolved).await.unwrap();
    let second = store.raise_anomaly(&raise()).await.unwrap();
    assert!(second.created);
    let mut reopen = resolved.clone();
    reopen.status = AnomalyStatus::Active;
    assert_kind(store.update_anomaly(&reopen).await, Conflict);
    let open = store
        .list_anomalies(ws, true, Page::first(10))
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
}
