//! Cases for [`ComplianceStore`] (consent ledger, suppression list) and [`AuditStore`].

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{AuditEntry, Channel, ConsentStatus, Suppression};
use crm_core::store::ComplianceStoreExt;
use crm_core::store::Page;

use super::fixtures::{
    assert_pagination, at, audit, consent, contact, created, existing, expect_err, ok, suppression,
    unique,
};

/// current_consent is the entry with the latest recorded_at (ties: greater id), whatever
/// the insertion order; None on a channel without entries.
pub async fn consent_latest_wins(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let current = |_: &str| store.current_consent(ws, ada.id, Channel::Email);
    assert_eq!(
        ok(current("none").await, "current_consent"),
        None,
        "no entry recorded yet: None"
    );

    let granted = consent(ws, ada.id, ConsentStatus::Granted, at(10));
    let stored = ok(
        store.record_consent(&granted).await.map(|r| r.result),
        "record_consent",
    );
    assert_eq!(stored, granted, "record_consent returns the row as stored");
    let older = consent(ws, ada.id, ConsentStatus::Withdrawn, at(5));
    ok(
        store.record_consent(&older).await.map(|r| r.result),
        "record_consent",
    );
    assert_eq!(
        ok(current("latest").await, "current_consent"),
        Some(granted),
        "the latest recorded_at is in force, not the latest insert"
    );
    let withdrawn = consent(ws, ada.id, ConsentStatus::Withdrawn, at(20));
    ok(
        store.record_consent(&withdrawn).await.map(|r| r.result),
        "record_consent",
    );
    assert_eq!(
        ok(current("newer").await, "current"),
        Some(withdrawn),
        "a newer entry replaces the old one"
    );

    let tie_a = consent(ws, ada.id, ConsentStatus::Granted, at(30));
    let tie_b = consent(ws, ada.id, ConsentStatus::Withdrawn, at(30));
    let winner = if tie_a.id > tie_b.id {
        tie_a.clone()
    } else {
        tie_b.clone()
    };
    for entry in [&tie_b, &tie_a] {
        ok(
            store.record_consent(entry).await.map(|r| r.result),
            "record_consent",
        );
    }
    assert_eq!(
        ok(current("tie").await, "current"),
        Some(winner),
        "equal recorded_at: the greater id wins"
    );
    let whatsapp = ok(
        store.current_consent(ws, ada.id, Channel::WhatsApp).await,
        "current_consent",
    );
    assert_eq!(whatsapp, None, "consent is per channel");
}

/// record_consent needs the contact in the workspace and a fresh id; reads are scoped.
pub async fn consent_references_and_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let ada = contact(store, ws).await;
    expect_err(
        store
            .record_consent(&consent(other, ada.id, ConsentStatus::Granted, at(0)))
            .await
            .map(|r| r.result),
        Kind::InvalidReference,
        "record_consent for another workspace's contact",
    );
    expect_err(
        store
            .record_consent(&consent(
                ws,
                ContactId::new(),
                ConsentStatus::Granted,
                at(0),
            ))
            .await
            .map(|r| r.result),
        Kind::InvalidReference,
        "record_consent for an unknown contact",
    );
    let first = consent(ws, ada.id, ConsentStatus::Granted, at(0));
    ok(
        store.record_consent(&first).await.map(|r| r.result),
        "record_consent",
    );
    let mut same_id = consent(ws, ada.id, ConsentStatus::Withdrawn, at(1));
    same_id.id = first.id;
    expect_err(
        store.record_consent(&same_id).await.map(|r| r.result),
        Kind::Conflict,
        "record_consent with a reused id",
    );
    let current = ok(
        store.current_consent(ws, ada.id, Channel::Email).await,
        "current_consent",
    );
    assert_eq!(current, Some(first), "a refused entry is not recorded");
    let foreign = ok(
        store.current_consent(other, ada.id, Channel::Email).await,
        "current_consent",
    );
    assert_eq!(
        foreign, None,
        "current_consent never returns another workspace's entry"
    );
}

/// add_suppression stores the normalised address and is idempotent per (channel, address);
/// list_suppressions pages by id.
pub async fn suppression_idempotent_and_normalised(store: &DynStore) {
    let ws = WorkspaceId::new();
    let address = format!("{}@example.com", unique("bounced"));
    let mut raw = suppression(ws, Some(Channel::Email), &address);
    raw.address = format!("  {}  ", address.to_uppercase());
    let first = created(
        store.add_suppression(&raw).await.map(|r| r.result),
        "add_suppression",
    );
    let mut expected = raw.clone();
    expected.address = address.clone();
    assert_eq!(
        first, expected,
        "add_suppression stores the normalised address"
    );

    let mut again = suppression(ws, Some(Channel::Email), &address);
    again.reason = crm_core::model::SuppressionReason::Complained;
    let same = existing(
        store.add_suppression(&again).await.map(|r| r.result),
        "add_suppression twice",
    );
    assert_eq!(same, first, "an equal entry is returned unchanged");
    let everywhere = created(
        store
            .add_suppression(&suppression(ws, None, &address))
            .await
            .map(|r| r.result),
        "the all-channel entry is distinct from the email one",
    );
    let phone = created(
        store
            .add_suppression(&suppression(ws, Some(Channel::Sms), "+49 151 1234 5678"))
            .await
            .map(|r| r.result),
        "add_suppression of a phone number",
    );
    assert_eq!(
        phone.address, "+4915112345678",
        "phone numbers are stored normalised"
    );
    created(
        store
            .add_suppression(&suppression(
                WorkspaceId::new(),
                Some(Channel::Email),
                &address,
            ))
            .await
            .map(|r| r.result),
        "another workspace has its own suppression list",
    );
    assert_pagination(
        "list_suppressions",
        vec![first.id, everywhere.id, phone.id],
        |s: &Suppression| s.id,
        |page| store.list_suppressions(ws, page),
    )
    .await;
}

/// find_suppression matches the normalised address on the channel or on all channels,
/// preferring the all-channel entry; other workspaces never match.
pub async fn suppression_find_channel_and_all_channels(store: &DynStore) {
    let ws = WorkspaceId::new();
    let address = format!("{}@example.com", unique("ada"));
    let shouted = format!(" {} ", address.to_uppercase());
    let find = |channel: Channel, addr: String| async move {
        ok(store.find_suppression(ws, channel, &addr).await, "find")
    };
    assert_eq!(
        find(Channel::Email, address.clone()).await,
        None,
        "nothing suppressed yet"
    );

    let email_only = created(
        store
            .add_suppression(&suppression(ws, Some(Channel::Email), &address))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    assert_eq!(
        find(Channel::Email, shouted.clone()).await,
        Some(email_only),
        "the channel entry matches"
    );
    assert_eq!(
        find(Channel::WhatsApp, address.clone()).await,
        None,
        "a channel entry blocks only its channel"
    );

    let all = created(
        store
            .add_suppression(&suppression(ws, None, &address))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    assert_eq!(
        find(Channel::Email, shouted).await,
        Some(all.clone()),
        "both exist: the all-channel entry wins"
    );
    assert_eq!(
        find(Channel::Sms, address.clone()).await,
        Some(all),
        "an all-channel entry blocks every channel"
    );

    let number = created(
        store
            .add_suppression(&suppression(
                ws,
                Some(Channel::WhatsApp),
                "+49 (151) 1234-5678",
            ))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    for spelling in ["+4915112345678", "+49 151 12345678", "+49-151-1234-5678"] {
        assert_eq!(
            find(Channel::WhatsApp, spelling.to_owned()).await,
            Some(number.clone()),
            "phone spellings match after normalisation"
        );
    }
    let foreign = ok(
        store
            .find_suppression(WorkspaceId::new(), Channel::Email, &address)
            .await,
        "find",
    );
    assert_eq!(
        foreign, None,
        "find_suppression never matches another workspace's entry"
    );
}

/// remove_suppression removes exactly (channel, normalised address); false when absent.
pub async fn suppression_remove_exact_entry(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let address = format!("{}@example.com", unique("ada"));
    let email_only = created(
        store
            .add_suppression(&suppression(ws, Some(Channel::Email), &address))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    created(
        store
            .add_suppression(&suppression(ws, None, &address))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    created(
        store
            .add_suppression(&suppression(other, None, &address))
            .await
            .map(|r| r.result),
        "add_suppression",
    );

    let upper = address.to_uppercase();
    assert!(
        !ok(
            store
                .remove_suppression(ws, Some(Channel::Sms), &address)
                .await,
            "remove"
        ),
        "removing an entry that does not exist is false"
    );
    assert!(
        ok(store.remove_suppression(ws, None, &upper).await, "remove"),
        "the all-channel entry is removed"
    );
    assert!(
        !ok(store.remove_suppression(ws, None, &address).await, "remove"),
        "removing twice is false"
    );
    let found = ok(
        store.find_suppression(ws, Channel::Email, &address).await,
        "find",
    );
    assert_eq!(
        found,
        Some(email_only),
        "removing the all-channel entry keeps the channel entry"
    );
    assert!(
        ok(
            store
                .remove_suppression(ws, Some(Channel::Email), &upper)
                .await,
            "remove"
        ),
        "channel entry removed"
    );
    assert_eq!(
        ok(
            store.find_suppression(ws, Channel::Email, &address).await,
            "find"
        ),
        None,
        "nothing left"
    );
    let foreign = ok(
        store
            .find_suppression(other, Channel::Email, &address)
            .await,
        "find",
    );
    assert!(
        foreign.is_some(),
        "removing in one workspace never touches another's entry"
    );
}

/// append_audit round trip; list_audit pages by id, filters by subject, scoped; reused id is Conflict.
pub async fn audit_append_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (x, y) = (unique("subject"), unique("subject"));
    let mut about_x = Vec::new();
    let mut all = Vec::new();
    for subject in [&x, &y, &x, &y, &x] {
        let entry = audit(ws, subject);
        let stored = ok(store.append_audit(&entry).await, "append_audit");
        assert_eq!(stored, entry, "append_audit returns the row as stored");
        all.push(entry.id);
        if subject == &x {
            about_x.push(entry.id);
        }
    }
    assert_pagination(
        "list_audit(None)",
        all.clone(),
        |e: &AuditEntry| e.id,
        |page| store.list_audit(ws, None, page),
    )
    .await;
    assert_pagination(
        "list_audit(Some(subject))",
        about_x,
        |e: &AuditEntry| e.id,
        |page| store.list_audit(ws, Some(x.as_str()), page),
    )
    .await;
    let mut same_id = audit(ws, &x);
    same_id.id = all[0];
    expect_err(
        store.append_audit(&same_id).await,
        Kind::Conflict,
        "append_audit with a reused id",
    );
    let foreign = ok(
        store
            .list_audit(WorkspaceId::new(), None, Page::first(10))
            .await,
        "list_audit",
    );
    assert!(
        foreign.is_empty(),
        "list_audit never returns another workspace's entries"
    );
    let foreign = ok(
        store
            .list_audit(WorkspaceId::new(), Some(x.as_str()), Page::first(10))
            .await,
        "list_audit",
    );
    assert!(
        foreign.is_empty(),
        "list_audit by subject is scoped to the workspace too"
    );
}
