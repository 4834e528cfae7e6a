//! The monthly budget: alerts at 50, 75 and 90 % once each, the pause at 100 %.

use std::sync::Arc;

use chrono::NaiveDate;

use crate::enrichment::{CallLog, Script};
use crate::store::fixtures::{eur, race};
use crm_core::DynStore;
use crm_core::enrichment::{BudgetPolicy, EnricherError, LookupKind, Source};
use crm_core::ids::WorkspaceId;
use crm_core::model::Event;
use crm_core::store::Scope;

use super::{chain, clock, enricher, query};

/// The budget events of `ws`, as (kind, idempotency key), in append order.
async fn budget_events(store: &DynStore, ws: WorkspaceId) -> Vec<(String, String)> {
    let events: Vec<Event> = store
        .list_events(Scope::Workspace(ws), 0, 1000)
        .await
        .expect("list events");
    events
        .into_iter()
        .filter(|e| e.kind.starts_with("enrichment.budget"))
        .map(|e| (e.kind, e.idempotency_key))
        .collect()
}

fn alert(percent: u8) -> (String, String) {
    let kind = if percent == 100 {
        "enrichment.budget_exhausted"
    } else {
        "enrichment.budget_alert"
    };
    (
        kind.to_owned(),
        format!("enrichment.budget:2026-01:{percent}"),
    )
}

/// With a budget of 100 and lookups costing 20, spend goes 20, 40, 60, 80, 100: the
/// 50 % alert fires at 60, 75 % at 80, 90 % and 100 % at 100, each exactly once, as
/// events keyed `enrichment.budget:{month}:{pct}`.
pub async fn budget_alerts_fire_once_each(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 20);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall)
        .with_budget(ws, BudgetPolicy::new(eur(100)).with_pause_at_limit(false));
    let mut seen = Vec::new();
    for expected in [
        vec![],
        vec![],
        vec![50],
        vec![75],
        vec![90, 100],
        vec![],
        vec![],
    ] {
        enricher.enrich_contact(ws, &query()).await.expect("enrich");
        seen.extend(expected);
        let want: Vec<_> = seen.iter().map(|&p| alert(p)).collect();
        assert_eq!(budget_events(&*store, ws).await, want, "alerts so far");
    }
    let events = store
        .list_events(Scope::Workspace(ws), 0, 1000)
        .await
        .expect("events");
    let fifty = events
        .iter()
        .find(|e| e.idempotency_key.ends_with(":50"))
        .expect("50 % alert");
    assert_eq!(fifty.payload["percent"], 50);
    assert_eq!(fifty.payload["spent_minor_units"], 60);
    assert_eq!(fifty.payload["budget_minor_units"], 100);
    assert_eq!(budget_events(&*store, WorkspaceId::new()).await, vec![]);
}

/// At 100 % lookups pause: the provider is not asked and the lookup answers
/// BudgetExhausted; cached data is still served; the next UTC month starts afresh.
pub async fn budget_pauses_at_100_percent_until_next_month(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[("first", Script::Miss), ("second", Script::Hit)],
        20,
    );
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall).with_budget(ws, BudgetPolicy::new(eur(60)));
    let cached = query();
    enricher
        .enrich_contact(ws, &cached)
        .await
        .expect("40 of 60");
    assert_eq!(log.names().len(), 2);

    // 40 spent: the first provider is asked (60), then the pause stops the waterfall.
    let err = enricher
        .enrich_contact(ws, &query())
        .await
        .expect_err("budget reached mid-waterfall");
    assert!(matches!(&err, EnricherError::BudgetExhausted { month } if month == "2026-01"));
    assert_eq!(log.names(), vec!["first", "second", "first"]);
    let err = enricher
        .enrich_contact(ws, &query())
        .await
        .expect_err("paused");
    assert!(matches!(err, EnricherError::BudgetExhausted { .. }));
    assert!(!err.is_retryable(), "a spent budget is not retryable");
    assert_eq!(log.names().len(), 3, "no provider is asked while paused");
    assert_eq!(
        budget_events(&*store, ws).await,
        vec![alert(50), alert(75), alert(90), alert(100)]
    );

    let hit = enricher.enrich_contact(ws, &cached).await.expect("cache");
    assert!(
        matches!(hit.source, Source::Cache { .. }),
        "cache hits are still served"
    );

    let february = NaiveDate::from_ymd_opt(2026, 2, 1).expect("date");
    clock.set(february.and_hms_opt(0, 0, 0).expect("time").and_utc());
    let got = enricher
        .enrich_contact(ws, &query())
        .await
        .expect("new month");
    assert_eq!(
        got.source,
        Source::Provider("second"),
        "a new month has a fresh budget"
    );
    let other = enricher
        .enrich_contact(WorkspaceId::new(), &query())
        .await
        .expect("no budget");
    assert_eq!(
        other.source,
        Source::Provider("second"),
        "budgets are per workspace"
    );
}

/// With the pause turned off, lookups go on past 100 % (the alerts still fire once).
pub async fn budget_pause_can_be_turned_off(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 30);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall)
        .with_default_budget(BudgetPolicy::new(eur(30)).with_pause_at_limit(false));
    for _ in 0..3 {
        let got = enricher
            .enrich_contact(ws, &query())
            .await
            .expect("not paused");
        assert_eq!(got.source, Source::Provider("p"));
    }
    assert_eq!(log.names().len(), 3);
    assert_eq!(
        budget_events(&*store, ws).await,
        vec![alert(50), alert(75), alert(90), alert(100)],
        "all thresholds crossed by the first lookup, each fired once"
    );
}

/// 20 racing lookups of 10 against a budget of 100: each alert fires exactly once.
pub async fn concurrent_lookups_fire_each_alert_once(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 10);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall)
        .with_budget(ws, BudgetPolicy::new(eur(100)).with_pause_at_limit(false));
    let enricher = &enricher;
    let results = race(20, |_| async move {
        enricher.enrich_contact(ws, &query()).await
    })
    .await;
    assert!(results.iter().all(Result::is_ok));
    let mut events = budget_events(&*store, ws).await;
    events.sort();
    let mut want = vec![alert(50), alert(75), alert(90), alert(100)];
    want.sort();
    assert_eq!(
        events, want,
        "each threshold fired exactly once under concurrency"
    );
}

/// A provider priced in another currency than the budget is refused before it is
/// asked (its cost could not be counted against the budget).
pub async fn provider_in_another_currency_is_refused(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let usd = crm_core::money::Money::new(10, crm_core::money::Currency::new("USD").expect("USD"))
        .expect("money");
    let provider = Arc::new(
        crate::enrichment::ScriptedProvider::new("dollar", &log)
            .answering(LookupKind::Contact, Script::Hit)
            .costing(usd),
    );
    let waterfall = crm_core::enrichment::Waterfall::new().then(LookupKind::Contact, provider);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall).with_budget(ws, BudgetPolicy::new(eur(100)));
    let err = enricher
        .enrich_contact(ws, &query())
        .await
        .expect_err("currency mismatch");
    assert!(
        matches!(
            err,
            EnricherError::CurrencyMismatch {
                provider: "dollar",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(log.calls().is_empty(), "the provider was not asked");
    let other = enricher
        .enrich_contact(WorkspaceId::new(), &query())
        .await
        .expect("a workspace without a budget records the provider's currency");
    assert_eq!(other.source, Source::Provider("dollar"));
}
