//! PostgreSQL-specific behaviour, against a real server: races, tenant isolation,
//! foreign keys across tenants, migrations, error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use crm_core::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Account, Activity, ActivityKind, Channel, Contact, Deal, Enrollment, Fingerprint, IntakeRecord,
    IntakeSource, IntakeStatus, Job, NewAccount, NewContact, NewDeal, NewEvent, OutboxMessage,
    OutboxStatus, Pipeline, Sequence, SequenceStep, Stage, StepDelay, Template,
};
use crm_core::store::BackendName;
use crm_core::store::EventStoreExt;
use crm_core::store::{
    AccountStore, Claim, ContactStore, DealStore, EventStore, IntakeStore, JobStore, LeaseStore,
    OutboxStore, Page, QuotaKey, QuotaStore, Scope, SentRecord, SequenceStore,
};
use crm_core::{Currency, Money};
use crm_store_postgres::testing::fresh_store;
use crm_store_postgres::{PostgresConfig, PostgresStore};

const TASKS: usize = 16;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn contact(ws: WorkspaceId, email: &str) -> Contact {
    Contact::create(
        ws,
        NewContact {
            first_name: "Ada".into(),
            email: Some(email.into()),
            ..Default::default()
        },
        t0(),
    )
    .unwrap()
}

fn account(ws: WorkspaceId, domain: &str) -> Account {
    Account::create(
        ws,
        NewAccount {
            name: "Acme".into(),
            domain: Some(domain.into()),
            ..Default::default()
        },
        t0(),
    )
    .unwrap()
}

fn message(ws: WorkspaceId, key: &str) -> OutboxMessage {
    OutboxMessage::new(ws, Channel::Email, "ada@example.com", "Hello", key, t0()).unwrap()
}

#[tokio::test]
async fn migrations_are_idempotent_and_live_in_the_schema() {
    let store = fresh_store().await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema = $1 AND table_name IN ('_sqlx_migrations', 'contacts', 'jobs')",
    )
    .bind(store.schema())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tables, 3);
    assert_eq!(store.backend_name(), "postgres");
}

#[tokio::test]
async fn debug_output_has_no_credentials() {
    let store = fresh_store().await;
    let shown = format!("{store:?}");
    assert!(shown.contains(store.schema()), "{shown}");
    assert!(!shown.contains("postgres://"), "{shown}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let config = PostgresConfig::default().with_acquire_timeout(std::time::Duration::from_secs(2));
    let err = PostgresStore::connect("postgres://nobody:secret@127.0.0.1:1/none", config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn compare_and_set_and_tenant_isolation() {
    let store = fresh_store().await;
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let c = store
        .insert_contact(&contact(ws, "ada@example.com"))
        .await
        .unwrap();
    let mut next = c.clone();
    next.title = Some("CTO".into());
    let v2 = store.update_contact(&next).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_at, c.created_at);
    let err = store.update_contact(&next).await.unwrap_err();
    match err {
        crm_core::StoreError::VersionConflict {
            expected, actual, ..
        } => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let mut foreign = v2.clone();
    foreign.workspace_id = other;
    let err = store.update_contact(&foreign).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound);
    let err = store.get_contact(other, c.id).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound);
    assert!(
        store
            .list_contacts(other, Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    // Email uniqueness is case-insensitive and per workspace.
    let err = store
        .insert_contact(&contact(ws, "ADA@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    store
        .insert_contact(&contact(other, "ada@example.com"))
        .await
        .unwrap();
    let found = store
        .find_contact_by_email(ws, &"Ada@EXAMPLE.com".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(c.id));
}

#[tokio::test]
async fn references_into_another_workspace_are_invalid() {
    let store = fresh_store().await;
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let acme = store
        .insert_account(&account(other, "acme.io"))
        .await
        .unwrap();
    let mut c = contact(ws, "bob@example.com");
    c.account_id = Some(acme.id);
    let err = store.insert_contact(&c).await.unwrap_err();
    match err {
        crm_core::StoreError::InvalidReference { entity, id } => {
            assert_eq!(entity, "account");
            assert_eq!(id, acme.id.to_string());
        }
        other => panic!("expected an invalid reference, got {other:?}"),
    }
    // Deals: the pipeline must exist here and own the stage.
    let lead = Stage::open("Lead", 10).unwrap();
    let pipeline = Pipeline::create(ws, "Sales", vec![lead.clone()], t0()).unwrap();
    let new_deal = |pipeline_id, stage_id| NewDeal {
        pipeline_id,
        stage_id,
        name: "Big".into(),
        amount: Money::new(100, Currency::new("EUR").unwrap()).unwrap(),
        account_id: None,
        contact_id: None,
        owner_id: None,
        expected_close: NaiveDate::from_ymd_opt(2026, 6, 1),
    };
    let deal = Deal::create(ws, new_deal(pipeline.id, lead.id), t0()).unwrap();
    let err = store.insert_deal(&deal).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidReference);
    store.insert_pipeline(&pipeline).await.unwrap();
    let stray = Deal::create(
        ws,
        new_deal(pipeline.id, Stage::open("X", 1).unwrap().id),
        t0(),
    )
    .unwrap();
    assert_eq!(
        store.insert_deal(&stray).await.unwrap_err().kind(),
        StoreErrorKind::Invalid
    );
    let stored = store.insert_deal(&deal).await.unwrap();
    assert_eq!(stored, deal);
}

#[tokio::test]
async fn concurrent_outbox_claims_never_overlap() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let total = 200;
    for i in 0..total {
        store
            .enqueue_outbox(&message(ws, &format!("k{i}")))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = Claim::new(Scope::All, format!("w{w}"), t0(), Duration::minutes(5), 7);
                let got = store.claim_outbox(&claim).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                for m in got {
                    assert_eq!(m.status, OutboxStatus::InFlight);
                    assert_eq!(m.lease.as_ref().unwrap().token, 1);
                    mine.push(m.id);
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "message {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
}

#[tokio::test]
async fn concurrent_job_claims_never_overlap() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let total = 160;
    for i in 0..total {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let job = Job::new(ws, kind, serde_json::json!({ "i": i }), t0()).unwrap();
        store.enqueue_job(&job).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = Claim::new(
                    Scope::Workspace(ws),
                    format!("w{w}"),
                    t0(),
                    Duration::minutes(1),
                    3,
                )
                .with_kinds(["even"]);
                let got = store.claim_jobs(&claim).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| {
                    assert_eq!(j.kind, "even");
                    j.id
                }));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), total / 2);
}

#[tokio::test]
async fn quota_is_never_overdrawn_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let key = QuotaKey::new("send:email", NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
    let cap = 50;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut granted = 0u32;
            for _ in 0..10 {
                if store
                    .try_consume_quota(ws, &key, cap, 1)
                    .await
                    .unwrap()
                    .is_granted()
                {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, cap);
    assert_eq!(store.quota_usage(ws, &key).await.unwrap(), cap);
    // A first consumption above the cap stores nothing.
    let fresh = QuotaKey::new("send:sms", key.period);
    assert!(
        !store
            .try_consume_quota(ws, &fresh, 3, 4)
            .await
            .unwrap()
            .is_granted()
    );
    assert_eq!(store.quota_usage(ws, &fresh).await.unwrap(), 0);
}

#[tokio::test]
async fn one_lease_holder_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let mut tasks = Vec::new();
    for h in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .try_acquire_lease(ws, "runner", &format!("h{h}"), Duration::seconds(30), t0())
                .await
                .unwrap()
        }));
    }
    let mut grants = Vec::new();
    for t in tasks {
        grants.extend(t.await.unwrap());
    }
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!(grant.token, 1);
    // Released, then taken by another holder: the token grows.
    assert!(store.release_lease(grant).await.unwrap());
    assert!(!store.release_lease(grant).await.unwrap());
    let next = store
        .try_acquire_lease(ws, "runner", "other", Duration::seconds(30), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.token, 2);
    let err = store
        .renew_lease(grant, Duration::seconds(5), t0())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::LeaseLost);
}

#[tokio::test]
async fn intake_dedup_keeps_one_pending_row_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let fp = Fingerprint::compute(Some("ada@example.com"), None, None);
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, fp) = (Arc::clone(&store), fp.clone());
        tasks.push(tokio::spawn(async move {
            let r = IntakeRecord::new(
                ws,
                IntakeSource::Csv,
                "leads.csv",
                serde_json::json!({ "row": i }),
                Some(fp),
                t0(),
            )
            .unwrap();
            store.insert_intake(&r).await.unwrap()
        }));
    }
    let mut rows = Vec::new();
    for t in tasks {
        rows.push(t.await.unwrap());
    }
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| r.status == IntakeStatus::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    for r in rows.iter().filter(|r| r.status != IntakeStatus::Pending) {
        assert_eq!(r.status, IntakeStatus::Duplicate);
        assert_eq!(r.duplicate_of, Some(pending[0].id));
    }
}

#[tokio::test]
async fn one_running_enrollment_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let c = store
        .insert_contact(&contact(ws, "ada@example.com"))
        .await
        .unwrap();
    let step = SequenceStep {
        channel: Channel::Email,
        template: Template {
            subject: None,
            body: "Hi".into(),
        },
        delay: StepDelay::Hours(1),
        window: None,
        requires_approval: false,
    };
    let seq = Sequence::create(ws, "Intro", vec![step], t0()).unwrap();
    store.insert_sequence(&seq).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        let e = Enrollment::new(ws, seq.id, 1, c.id, t0());
        tasks.push(tokio::spawn(
            async move { store.insert_enrollment(&e).await },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict),
        }
    }
    assert_eq!(ok, 1);
    let due = store.list_due_enrollments(ws, t0(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
}

#[tokio::test]
async fn event_appends_are_idempotent_and_ordered_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 {
                "same".to_owned()
            } else {
                format!("k{i}")
            };
            let e = NewEvent::new(ws, "contact.created", "c", serde_json::json!({}), key, t0())
                .unwrap();
            store.append_event(&e).await.unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap().created {
            created += 1;
        }
    }
    assert_eq!(created, 1 + TASKS / 2);
    let events = store
        .list_events(Scope::Workspace(ws), 0, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), created);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
}

#[tokio::test]
async fn mark_sent_writes_both_or_neither() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let c = store
        .insert_contact(&contact(ws, "ada@example.com"))
        .await
        .unwrap();
    let m = message(ws, "k1").with_contact(c.id);
    store.enqueue_outbox(&m).await.unwrap();
    let claim = Claim::new(Scope::Workspace(ws), "w", t0(), Duration::minutes(1), 10);
    let claimed = store.claim_outbox(&claim).await.unwrap();
    let token = claimed[0].lease.as_ref().unwrap().token;
    // An activity about a contact of no workspace: nothing is stored.
    let bad = Activity::for_contact(
        ws,
        crm_core::ids::ContactId::new(),
        ActivityKind::MessageSent,
        "sent",
        t0(),
    )
    .unwrap();
    let sent = |activity| SentRecord {
        provider_message_id: Some("p-1".into()),
        sent_at: t0(),
        activity,
        enrollment: None,
    };
    let err = store
        .mark_outbox_sent(ws, m.id, token, &sent(bad))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidReference);
    assert_eq!(
        store.get_outbox(ws, m.id).await.unwrap().status,
        OutboxStatus::InFlight
    );
    let good = Activity::for_contact(ws, c.id, ActivityKind::MessageSent, "sent", t0())
        .unwrap()
        .with_outbox_message(m.id);
    let err = store
        .mark_outbox_sent(ws, m.id, token + 1, &sent(good.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::LeaseLost);
    let done = store
        .mark_outbox_sent(ws, m.id, token, &sent(good.clone()))
        .await
        .unwrap();
    assert_eq!(done.status, OutboxStatus::Sent);
    assert_eq!(done.provider_message_id.as_deref(), Some("p-1"));
    let filter = crm_core::store::ActivityFilter {
        contact_id: Some(c.id),
        ..Default::default()
    };
    let activities = crm_core::store::ActivityStore::list_activities(&store, ws, &filter, 10)
        .await
        .unwrap();
    assert_eq!(activities, vec![good]);
    let missing = store
        .mark_outbox_sent(
            WorkspaceId::new(),
            m.id,
            token,
            &sent(activities[0].clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), StoreErrorKind::NotFound);
}

#[tokio::test]
async fn unknown_stored_enum_is_a_backend_error() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let m = store.enqueue_outbox(&message(ws, "k")).await.unwrap().value;
    sqlx::query("UPDATE outbox_messages SET status = 'teleported' WHERE id = $1")
        .bind(m.id.as_uuid())
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get_outbox(ws, m.id).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend);
}

#[tokio::test]
async fn bad_text_is_invalid_not_a_crash() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut c = contact(ws, "nul@example.com");
    c.title = Some("a\0b".into());
    let err = store.insert_contact(&c).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err:?}");
}

#[tokio::test]
async fn account_domains_are_unique_per_workspace() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    store.insert_account(&account(ws, "acme.io")).await.unwrap();
    let err = store
        .insert_account(&account(ws, "https://www.acme.io/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    store
        .insert_account(&account(WorkspaceId::new(), "acme.io"))
        .await
        .unwrap();
}
