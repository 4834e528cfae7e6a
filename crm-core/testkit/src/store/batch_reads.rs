//! Cases for the batched reads the dispatcher checks a whole batch with:
//! [`find_approvals_for_outbox`](crm_core::store::ApprovalStore::find_approvals_for_outbox),
//! [`find_suppressions`](crm_core::store::ComplianceStore::find_suppressions) and
//! [`current_consents`](crm_core::store::ComplianceStore::current_consents).

use crm_core::DynStore;
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::{Channel, ConsentStatus};
use crm_core::store::ComplianceStoreExt;

use super::fixtures::{
    approval, at, awaiting_message, consent, contact, created, ok, suppression, unique,
};

/// Each batched read answers one entry per key, in the keys' order (repeats included),
/// exactly as the single-row read would, and never from another workspace.
pub async fn batched_gate_reads_answer_each_key_in_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();

    // Approval items: two messages with items, one without, one of another workspace.
    let first = approval(store, ws, at(60)).await;
    let second = approval(store, ws, at(60)).await;
    let bare = awaiting_message(store, ws).await;
    let foreign = approval(store, other, at(60)).await;
    let ids = [
        second.outbox_message_id,
        bare.id,
        first.outbox_message_id,
        foreign.outbox_message_id,
        OutboxMessageId::new(),
        second.outbox_message_id,
    ];
    let found = ok(
        store.find_approvals_for_outbox(ws, &ids).await,
        "find_approvals_for_outbox",
    );
    assert_eq!(
        found,
        vec![
            Some(second.clone()),
            None,
            Some(first),
            None,
            None,
            Some(second)
        ],
        "one answer per id, in order; another workspace's item is not found"
    );
    assert!(
        ok(store.find_approvals_for_outbox(ws, &[]).await, "empty").is_empty(),
        "no ids, no answers"
    );

    // Suppressions: a channel entry, an all-channel entry, normalised spellings.
    let email = format!("{}@example.com", unique("ada"));
    let phone = "+49 151 2345 6789";
    let email_only = created(
        store
            .add_suppression(&suppression(ws, Some(Channel::Email), &email))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    let everywhere = created(
        store
            .add_suppression(&suppression(ws, None, phone))
            .await
            .map(|r| r.result),
        "add_suppression",
    );
    created(
        store
            .add_suppression(&suppression(other, None, &email))
            .await
            .map(|r| r.result),
        "add_suppression in another workspace",
    );
    let shouted = email.to_uppercase();
    let targets = [
        (Channel::WhatsApp, "+4915123456789"),
        (Channel::Email, shouted.as_str()),
        (Channel::WhatsApp, email.as_str()),
        (Channel::Sms, "+49 151 0000 0000"),
        (Channel::Email, email.as_str()),
    ];
    let found = ok(
        store.find_suppressions(ws, &targets).await,
        "find_suppressions",
    );
    assert_eq!(
        found,
        vec![
            Some(everywhere),
            Some(email_only.clone()),
            None,
            None,
            Some(email_only)
        ],
        "one answer per target, matched after normalisation, channel entries only on their channel"
    );
    for (target, answer) in targets.iter().zip(&found) {
        assert_eq!(
            &ok(
                store.find_suppression(ws, target.0, target.1).await,
                "find_suppression"
            ),
            answer,
            "the batched answer equals the single read for {target:?}"
        );
    }

    // Consents: the latest entry per (contact, channel).
    let ada = contact(store, ws).await;
    let bob = contact(store, ws).await;
    ok(
        store
            .record_consent(&consent(ws, ada.id, ConsentStatus::Granted, at(1)))
            .await
            .map(|r| r.result),
        "record_consent",
    );
    let withdrawn = consent(ws, ada.id, ConsentStatus::Withdrawn, at(2));
    ok(
        store.record_consent(&withdrawn).await.map(|r| r.result),
        "record_consent",
    );
    let bob_granted = consent(ws, bob.id, ConsentStatus::Granted, at(1));
    ok(
        store.record_consent(&bob_granted).await.map(|r| r.result),
        "record_consent",
    );
    let keys = [
        (bob.id, Channel::Email),
        (ada.id, Channel::Sms),
        (ada.id, Channel::Email),
        (ContactId::new(), Channel::Email),
        (bob.id, Channel::Email),
    ];
    let found = ok(store.current_consents(ws, &keys).await, "current_consents");
    assert_eq!(
        found,
        vec![
            Some(bob_granted.clone()),
            None,
            Some(withdrawn),
            None,
            Some(bob_granted)
        ],
        "one answer per key, a repeated key answered again: the entry in force, per channel"
    );
    let foreign = ok(
        store.current_consents(other, &keys).await,
        "current_consents in another workspace",
    );
    assert_eq!(
        foreign,
        vec![None; keys.len()],
        "another workspace sees none of them"
    );
}
