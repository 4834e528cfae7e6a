//! Quickstart: a workspace's contacts, accounts and a deal on a pipeline, on the
//! embedded memory store. No services needed:
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::error::Error;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Account, Activity, ActivityKind, Contact, Deal, NewAccount, NewContact, NewDeal, Pipeline,
    Stage, StageOutcome,
};
use crm_core::store::Page;
use crm_core::{Clock, Currency, DynStore, ManualClock, Money, StoreErrorKind};
use crm_store_memory::MemoryStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // A host holds one store behind the trait, and a clock it controls.
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .single()
            .ok_or("bad date")?,
    );
    let ws = WorkspaceId::new();
    println!("workspace {ws} on the {} store", store.backend_name());

    // Accounts and contacts.
    let acme = store
        .insert_account(&Account::create(
            ws,
            NewAccount {
                name: "Acme GmbH".into(),
                domain: Some("https://www.acme.example/".into()),
                industry: Some("Manufacturing".into()),
                employee_count: Some(250),
                ..Default::default()
            },
            clock.now(),
        )?)
        .await?;
    println!(
        "account   {:<22} domain {}",
        acme.name,
        acme.domain.as_ref().map_or("-", |d| d.as_str())
    );

    let people = [
        ("Ada", "Lovelace", "ada@acme.example", "Europe/Berlin"),
        ("Grace", "Hopper", "grace@acme.example", "America/New_York"),
    ];
    let mut contacts = Vec::new();
    for (first, last, email, tz) in people {
        let contact = store
            .insert_contact(&Contact::create(
                ws,
                NewContact {
                    first_name: first.into(),
                    last_name: last.into(),
                    email: Some(email.into()),
                    time_zone: Some(tz.into()),
                    account_id: Some(acme.id),
                    ..Default::default()
                },
                clock.now(),
            )?)
            .await?;
        println!("contact   {:<22} tz {}", contact.display_name(), tz);
        contacts.push(contact);
    }

    // Bad input is a typed error, never a panic.
    let bad = Contact::create(
        ws,
        NewContact {
            email: Some("not-an-email".into()),
            ..Default::default()
        },
        clock.now(),
    );
    if let Err(e) = bad {
        println!("rejected  {e}");
    }
    // A second contact with the same address (in any letter case) is a conflict.
    let duplicate = Contact::create(
        ws,
        NewContact {
            email: Some("ADA@acme.example".into()),
            ..Default::default()
        },
        clock.now(),
    )?;
    if let Err(e) = store.insert_contact(&duplicate).await {
        assert_eq!(e.kind(), StoreErrorKind::Conflict);
        println!("rejected  {e}");
    }

    // A pipeline and a deal moving through it.
    let pipeline = store
        .insert_pipeline(&Pipeline::create(
            ws,
            "New business",
            vec![
                Stage::open("Qualified", 20)?,
                Stage::open("Proposal", 50)?,
                Stage::open("Negotiation", 75)?,
                Stage::new("Won", 100, StageOutcome::Won)?,
                Stage::new("Lost", 0, StageOutcome::Lost)?,
            ],
            clock.now(),
        )?)
        .await?;
    let eur = Currency::new("EUR")?;
    let deal = store
        .insert_deal(&Deal::create(
            ws,
            NewDeal {
                pipeline_id: pipeline.id,
                stage_id: pipeline.stages[0].id,
                name: "Acme rollout".into(),
                amount: Money::new(4_800_000, eur)?,
                account_id: Some(acme.id),
                contact_id: Some(contacts[0].id),
                owner_id: None,
                expected_close: None,
            },
            clock.now(),
        )?)
        .await?;
    println!(
        "deal      {:<22} {} in stage {}",
        deal.name, deal.amount, pipeline.stages[0].name
    );

    // Optimistic concurrency: two people edit the same deal; the second write loses.
    clock.advance(chrono::Duration::days(3));
    let mut first_edit = deal.clone();
    first_edit.stage_id = pipeline.stages[1].id;
    first_edit.updated_at = clock.now();
    let moved = store.update_deal(&first_edit).await?;
    let mut stale_edit = deal.clone();
    stale_edit.name = "Acme rollout (EU)".into();
    match store.update_deal(&stale_edit).await {
        Err(e) if e.kind() == StoreErrorKind::VersionConflict => println!("conflict  {e}"),
        other => return Err(format!("expected a version conflict, got {other:?}").into()),
    }
    println!(
        "deal      {:<22} now in stage {} (version {})",
        moved.name, pipeline.stages[1].name, moved.version
    );

    // The timeline.
    store
        .record_activity(
            &Activity::for_contact(
                ws,
                contacts[0].id,
                ActivityKind::Call,
                "Intro call: wants a proposal",
                clock.now(),
            )?
            .with_deal(deal.id),
        )
        .await?;
    let timeline = store
        .list_activities(
            ws,
            &crm_core::store::ActivityFilter {
                contact_id: Some(contacts[0].id),
                ..Default::default()
            },
            10,
        )
        .await?;
    for activity in &timeline {
        println!(
            "activity  {} {}: {}",
            activity.occurred_at.format("%Y-%m-%d"),
            activity.kind,
            activity.summary
        );
    }

    // Tenants never see each other.
    let other_ws = WorkspaceId::new();
    let seen = store.list_contacts(other_ws, Page::first(100)).await?;
    println!(
        "another workspace sees {} contacts; this one sees {}",
        seen.len(),
        store.list_contacts(ws, Page::first(100)).await?.len()
    );
    Ok(())
}
