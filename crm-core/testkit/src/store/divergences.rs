//! Cases that close divergences found by reading both stores side by side: NUL
//! characters, non-ASCII email identity, racing score writers, racing suppression
//! edits, the total a refused quota reports, time precision and the entity an unknown
//! reference names.

use chrono::Duration;
use serde_json::json;

use crm_core::DynStore;
use crm_core::error::{StoreError, StoreErrorKind as Kind};
use crm_core::ids::{AccountId, ContactId, SequenceId, WorkspaceId};
use crm_core::model::{
    Activity, ActivityKind, Channel, ConsentStatus, Contact, Enrollment, NewContact,
};
use crm_core::scoring::{ContactScore, ScoreWritten, Tier};
use crm_core::store::{EventStoreExt, QuotaDecision, QuotaKey, Scope};

use super::fixtures::{
    approval, audit, base, consent, contact, expect_err, new_anomaly, new_contact, new_event,
    new_job, new_message, new_pipeline, new_sequence, ok, race, same_invalid, sequence,
    suppression, unique, unique_email,
};

/// A NUL character (U+0000) in any text or JSON field is `Invalid`, the error the
/// model's `validate` gives, and nothing is written.
pub async fn nul_in_text_or_json_is_invalid_everywhere(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;

    let mut c = new_contact(ws, &unique_email());
    c.first_name = "Ada\0".into();
    same_invalid(store.insert_contact(&c).await, c.validate(), "contact name");
    let mut c = new_contact(ws, &unique_email());
    c.custom_fields.insert("plan".into(), "pro\0".into());
    same_invalid(
        store.insert_contact(&c).await,
        c.validate(),
        "contact custom field",
    );
    let mut edited = ada.clone();
    edited.title = Some("CTO\0".into());
    same_invalid(
        store.update_contact(&edited).await,
        edited.validate(),
        "contact update",
    );

    let mut account = super::fixtures::new_account(ws, &super::fixtures::unique_domain());
    account.industry = Some("Soft\0ware".into());
    same_invalid(
        store.insert_account(&account).await,
        account.validate(),
        "account",
    );

    let mut pipeline = new_pipeline(ws);
    pipeline.name = "Sales\0".into();
    same_invalid(
        store.insert_pipeline(&pipeline).await,
        pipeline.validate(),
        "pipeline",
    );
    let pipeline = ok(store.insert_pipeline(&new_pipeline(ws)).await, "pipeline");
    let mut deal = super::fixtures::new_deal(&pipeline);
    deal.name = "Big\0deal".into();
    same_invalid(store.insert_deal(&deal).await, deal.validate(), "deal");

    let mut activity = Activity::for_contact(ws, ada.id, ActivityKind::Note, "note", base())
        .expect("valid activity");
    activity.details = json!({ "text": "a\0b" });
    same_invalid(
        store.record_activity(&activity).await,
        activity.validate(),
        "activity",
    );

    let mut message = new_message(ws);
    message.body = "Hi\0".into();
    same_invalid(
        store.enqueue_outbox(&message).await,
        message.validate(),
        "outbox body",
    );
    let mut message = new_message(ws);
    message.metadata = json!({ "k\0": 1 });
    same_invalid(
        store.enqueue_outbox(&message).await,
        message.validate(),
        "outbox metadata",
    );

    let mut event = new_event(ws, &unique("nul"));
    event.payload = json!({ "list": ["\0"] });
    same_invalid(
        store.append_event(&event).await,
        event.validate(),
        "event payload",
    );
    let mut job = new_job(ws, "conformance.work", 3);
    job.payload = json!("\0");
    same_invalid(store.enqueue_job(&job).await, job.validate(), "job payload");

    let mut entry = audit(ws, "contact-1");
    entry.details = json!({ "reason": "x\0" });
    same_invalid(
        store.append_audit(&entry).await,
        entry.validate(),
        "audit details",
    );
    let mut grant = consent(ws, ada.id, ConsentStatus::Granted, base());
    grant.source = "form\0".into();
    same_invalid(
        store.record_consent(&grant).await.map(|r| r.result),
        grant.validate(),
        "consent source",
    );
    let mut blocked = suppression(ws, None, &unique_email());
    blocked.address = "x\0@example.com".into();
    same_invalid(
        store.add_suppression(&blocked).await.map(|r| r.result),
        blocked.validate(),
        "suppression",
    );

    let mut anomaly = new_anomaly(ws, &unique("nul"));
    anomaly.summary = "\0".into();
    same_invalid(
        store.raise_anomaly(&anomaly).await,
        anomaly.validate(),
        "anomaly",
    );
    let mut seq = new_sequence(ws);
    seq.steps[0].template.subject = Some("Hi\0".into());
    same_invalid(
        store.insert_sequence(&seq).await,
        seq.validate(),
        "sequence template",
    );

    let item = approval(store, ws, base() + Duration::days(1)).await;
    let mut decided = item.clone();
    decided.edited_body = Some("Edited\0".into());
    same_invalid(
        store.update_approval(&decided).await,
        decided.validate(),
        "edited body",
    );

    let stored = ok(store.get_contact(ws, ada.id).await, "get_contact");
    assert_eq!(stored, ada, "a refused update writes nothing");
    let stored = ok(store.get_approval(ws, item.id).await, "get_approval");
    assert_eq!(stored, item, "a refused approval edit writes nothing");
}

/// Email identity ignores case with Unicode rules and treats an IDN domain and its
/// ASCII (punycode) form as one: lookups find the contact and a second contact with
/// the same address is `Conflict`, on every store.
pub async fn email_identity_folds_unicode_and_idn(store: &DynStore) {
    let ws = WorkspaceId::new();
    let local = unique("jörg");
    let jorg = ok(
        store
            .insert_contact(&new_contact(ws, &format!("{local}@Bücher.Example")))
            .await,
        "insert Jörg",
    );
    let upper_local = local.to_uppercase();
    for variant in [
        format!("{upper_local}@BÜCHER.EXAMPLE"),
        format!("{local}@xn--bcher-kva.example"),
        format!("{upper_local}@XN--BCHER-KVA.example"),
    ] {
        let email = crm_core::EmailAddress::parse(&variant).expect("valid variant");
        let found = ok(store.find_contact_by_email(ws, &email).await, "by email");
        assert_eq!(
            found.map(|c| c.id),
            Some(jorg.id),
            "{variant} is Jörg's address"
        );
        let found = ok(
            store
                .find_contact_by_address(ws, Channel::Email, &format!(" {variant} "))
                .await,
            "by address",
        );
        assert_eq!(found.map(|c| c.id), Some(jorg.id), "{variant} by address");
        expect_err(
            store.insert_contact(&new_contact(ws, &variant)).await,
            Kind::Conflict,
            "the same address in another form is taken",
        );
    }
    let other = crm_core::EmailAddress::parse(&format!("{local}@bucher.example")).expect("valid");
    assert_eq!(
        ok(store.find_contact_by_email(ws, &other).await, "other").map(|c| c.id),
        None,
        "bucher.example is another domain"
    );
}

/// Writers racing on one contact's score never both see the old tier: exactly one of
/// them reports the tier change, so exactly one tier-change event is appended.
pub async fn concurrent_score_writers_emit_one_tier_change(store: &DynStore) {
    const N: usize = 8;
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let hot = ContactScore {
        workspace_id: ws,
        contact_id: ada.id,
        total: 75,
        tier: Tier::Hot,
        breakdown: Vec::new(),
        model_version: 1,
        computed_at: base(),
        manual_override: None,
    };
    let results = race(N, |i| {
        let scores = [hot.clone()];
        async move {
            let derive = move |written: &[ScoreWritten]| {
                written
                    .iter()
                    .filter(|w| w.previous != Some(w.current))
                    .map(|w| {
                        crm_core::model::NewEvent::new(
                            ws,
                            "contact.tier_changed",
                            w.contact_id.to_string(),
                            json!({ "writer": i }),
                            // A key per writer: idempotency must not hide a double event.
                            format!("tier:{}:{i}", w.contact_id),
                            base(),
                        )
                    })
                    .collect()
            };
            store
                .upsert_contact_scores_with_events(ws, &scores, &derive)
                .await
        }
    })
    .await;
    let mut changed = 0;
    for written in results {
        let written = ok(written, "upsert_contact_scores_with_events");
        if written[0].previous != Some(written[0].current) {
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "exactly one writer sees the tier change");
    let log = ok(
        store.list_events(Scope::Workspace(ws), 0, 100).await,
        "events",
    );
    let tier_events = log
        .iter()
        .filter(|e| e.kind == "contact.tier_changed")
        .count();
    assert_eq!(tier_events, 1, "exactly one tier-change event");
}

/// `add_suppression` racing `remove_suppression` on one address always succeeds:
/// each add returns the entry in force right after it (created or found), each remove
/// answers whether it removed one; neither fails on any store.
pub async fn suppression_add_racing_remove_never_fails(store: &DynStore) {
    const ROUNDS: usize = 4;
    const N: usize = 12;
    let ws = WorkspaceId::new();
    let address = unique_email();
    for _ in 0..ROUNDS {
        let results = race(N, |i| {
            let address = address.clone();
            async move {
                if i % 2 == 0 {
                    let entry = suppression(ws, Some(Channel::Email), &address.to_uppercase());
                    store
                        .add_suppression(&entry)
                        .await
                        .map(|r| r.result)
                        .map(|s| Some(s.value))
                } else {
                    store
                        .remove_suppression(ws, Some(Channel::Email), &address)
                        .await
                        .map(|_| None)
                }
            }
        })
        .await;
        for result in results {
            if let Some(entry) = ok(result, "add or remove racing the other") {
                assert_eq!(entry.address, address, "the normalised address");
                assert_eq!(entry.channel, Some(Channel::Email));
            }
        }
    }
    // Whatever the interleaving, the list is left in a state a later add and remove
    // see consistently.
    ok(
        store
            .add_suppression(&suppression(ws, Some(Channel::Email), &address))
            .await
            .map(|r| r.result),
        "add after the race",
    );
    assert!(
        ok(
            store
                .remove_suppression(ws, Some(Channel::Email), &address)
                .await,
            "remove"
        ),
        "the entry added last is there to remove"
    );
}

/// A refused consumption reports in `Exhausted { used }` the total it was judged
/// against: the one that makes `used + amount` pass the cap, a total the counter
/// really held.
pub async fn quota_exhausted_reports_the_deciding_total(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = QuotaKey::new(unique("send"), base().date_naive());
    let granted = ok(store.try_consume_quota(ws, &key, 5, 3).await, "consume 3");
    assert_eq!(
        granted,
        QuotaDecision::Granted {
            used: 3,
            remaining: 2
        }
    );
    let refused = ok(
        store.try_consume_quota(ws, &key, 5, 3).await,
        "consume 3 more",
    );
    assert_eq!(refused, QuotaDecision::Exhausted { used: 3, cap: 5 });

    const N: usize = 24;
    const CAP: u32 = 20;
    let key = QuotaKey::new(unique("send"), base().date_naive());
    let amount = |i: usize| u32::try_from(i % 3 + 1).expect("small");
    let decisions = race(N, |i| {
        let key = key.clone();
        async move { store.try_consume_quota(ws, &key, CAP, amount(i)).await }
    })
    .await;
    let mut totals = vec![0];
    let mut refusals = Vec::new();
    for (i, decision) in decisions.into_iter().enumerate() {
        match ok(decision, "try_consume_quota") {
            QuotaDecision::Granted { used, remaining } => {
                assert_eq!(used + remaining, CAP);
                totals.push(used);
            }
            QuotaDecision::Exhausted { used, cap } => {
                assert_eq!(cap, CAP);
                refusals.push((used, amount(i)));
            }
        }
    }
    let last = totals.iter().copied().max().unwrap_or(0);
    assert_eq!(ok(store.quota_usage(ws, &key).await, "usage"), last);
    for (used, amount) in refusals {
        assert!(
            used + amount > CAP,
            "refused at {used} + {amount}: it fits under {CAP}"
        );
        assert!(
            totals.contains(&used),
            "refused at {used}, a total the counter never held"
        );
    }
}

/// Times with sub-microsecond parts are truncated to microseconds by the model's
/// constructors, so what a store returns equals what was written on every store
/// (before and after the PostgreSQL epoch, 2000-01-01).
pub async fn sub_microsecond_times_round_trip_alike(store: &DynStore) {
    let ws = WorkspaceId::new();
    for instant in [
        base() + Duration::nanoseconds(1_234_567),
        chrono::DateTime::UNIX_EPOCH + Duration::nanoseconds(999),
        base() - Duration::nanoseconds(1),
    ] {
        let input = NewContact {
            first_name: "Ada".into(),
            email: Some(unique_email()),
            ..NewContact::default()
        };
        let c = Contact::create(ws, input, instant).expect("valid contact");
        assert_eq!(
            c.created_at.timestamp_subsec_nanos() % 1_000,
            0,
            "truncated"
        );
        let stored = ok(store.insert_contact(&c).await, "insert_contact");
        assert_eq!(stored, c, "the row returned is the row written");
        assert_eq!(
            ok(store.get_contact(ws, c.id).await, "get"),
            c,
            "and read back"
        );

        let mut message = crm_core::model::OutboxMessage::new(
            ws,
            Channel::Email,
            unique_email(),
            "Hi",
            unique("send"),
            instant,
        )
        .expect("valid message");
        message = message.with_not_before(instant + Duration::nanoseconds(1_500));
        let stored = super::fixtures::created(store.enqueue_outbox(&message).await, "enqueue");
        assert_eq!(
            stored, message,
            "the message returned is the message written"
        );
    }
}

/// An unknown reference is `InvalidReference` naming the missing entity and its id,
/// the same on every store.
pub async fn unknown_references_name_the_same_entity(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let expect_ref =
        |result: Result<(), StoreError>, entity: &str, id: String, what: &str| match expect_err(
            result,
            Kind::InvalidReference,
            what,
        ) {
            StoreError::InvalidReference { entity: e, id: i } => {
                assert_eq!((e, i), (entity, id), "{what}: the missing entity and id");
            }
            other => panic!("{what}: got {other:?}"),
        };

    let missing_account = AccountId::new();
    let mut c = new_contact(ws, &unique_email());
    c.account_id = Some(missing_account);
    expect_ref(
        store.insert_contact(&c).await.map(drop),
        "account",
        missing_account.to_string(),
        "contact with a missing account",
    );

    let missing_contact = ContactId::new();
    let message = new_message(ws).with_contact(missing_contact);
    expect_ref(
        store.enqueue_outbox(&message).await.map(drop),
        "contact",
        missing_contact.to_string(),
        "outbox message for a missing contact",
    );

    let missing_sequence = SequenceId::new();
    let enrollment = Enrollment::new(ws, missing_sequence, 1, ada.id, base());
    expect_ref(
        store.insert_enrollment(&enrollment).await.map(drop),
        "sequence",
        missing_sequence.to_string(),
        "enrollment in a missing sequence",
    );
    let seq = sequence(store, ws).await;
    let enrollment = Enrollment::new(ws, seq.id, seq.version, missing_contact, base());
    expect_ref(
        store.insert_enrollment(&enrollment).await.map(drop),
        "contact",
        missing_contact.to_string(),
        "enrollment of a missing contact",
    );

    let grant = consent(ws, missing_contact, ConsentStatus::Granted, base());
    expect_ref(
        store
            .record_consent(&grant)
            .await
            .map(|r| r.result)
            .map(drop),
        "contact",
        missing_contact.to_string(),
        "consent of a missing contact",
    );
    let activity = Activity::for_contact(ws, missing_contact, ActivityKind::Note, "n", base())
        .expect("valid activity");
    expect_ref(
        store.record_activity(&activity).await.map(drop),
        "contact",
        missing_contact.to_string(),
        "activity of a missing contact",
    );
}
