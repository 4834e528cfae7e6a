//! Cases for [`EnrichmentStore`](crm_core::store::EnrichmentStore).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::money::Currency;
use crm_core::store::{CachedEnrichment, EnrichmentDataType, EnrichmentUsage, SpendTotals};

use super::fixtures::{base, eur, expect_err, ok, race, unique};

fn entry(ws: WorkspaceId, subject: &str, provider: &str) -> CachedEnrichment {
    CachedEnrichment {
        workspace_id: ws,
        data_type: EnrichmentDataType::Company,
        subject: subject.to_owned(),
        provider: provider.to_owned(),
        payload: json!({"name": "Acme", "employee_count": 42}),
        fetched_at: base(),
    }
}

fn usage(ws: WorkspaceId, cost: i64, at: DateTime<Utc>) -> EnrichmentUsage {
    EnrichmentUsage {
        workspace_id: ws,
        provider: "scripted".to_owned(),
        data_type: EnrichmentDataType::Contact,
        hit: true,
        credits: 1,
        cost: eur(cost),
        at,
    }
}

fn january() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid month")
}

fn euro() -> Currency {
    Currency::new("EUR").expect("EUR")
}

/// A cache entry reads back as written; a second put on the same key replaces it; a
/// missing key is `None`; blank subject or provider is Invalid.
pub async fn enrichment_cache_round_trip_and_overwrite(store: &DynStore) {
    let ws = WorkspaceId::new();
    let subject = unique("subject");
    let first = entry(ws, &subject, "apollo");
    ok(store.put_cached_enrichment(&first).await, "put cache");
    let got = ok(
        store
            .get_cached_enrichment(ws, EnrichmentDataType::Company, &subject)
            .await,
        "get cache",
    );
    assert_eq!(
        got,
        Some(first.clone()),
        "a cache entry reads back unchanged"
    );

    let mut second = entry(ws, &subject, "clearbit");
    second.payload = json!({"name": "Acme Inc"});
    second.fetched_at = base() + Duration::days(3);
    ok(
        store.put_cached_enrichment(&second).await,
        "overwrite cache",
    );
    let got = ok(
        store
            .get_cached_enrichment(ws, EnrichmentDataType::Company, &subject)
            .await,
        "get cache",
    );
    assert_eq!(got, Some(second), "the last write wins on the same key");

    let other_type = ok(
        store
            .get_cached_enrichment(ws, EnrichmentDataType::Contact, &subject)
            .await,
        "get other type",
    );
    assert_eq!(other_type, None, "the data type is part of the key");
    let missing = ok(
        store
            .get_cached_enrichment(ws, EnrichmentDataType::Company, &unique("none"))
            .await,
        "get missing",
    );
    assert_eq!(missing, None, "a missing key is None, not an error");

    expect_err(
        store.put_cached_enrichment(&entry(ws, " ", "apollo")).await,
        Kind::Invalid,
        "a blank subject is Invalid",
    );
    expect_err(
        store.put_cached_enrichment(&entry(ws, &subject, "")).await,
        Kind::Invalid,
        "a blank provider is Invalid",
    );
}

/// Another workspace sees neither the cache entry nor the spend nor the usage.
pub async fn enrichment_tenant_isolation(store: &DynStore) {
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let subject = unique("subject");
    ok(
        store
            .put_cached_enrichment(&entry(ws, &subject, "apollo"))
            .await,
        "put cache",
    );
    ok(
        store.record_enrichment_usage(&usage(ws, 250, base())).await,
        "record usage",
    );
    let seen = ok(
        store
            .get_cached_enrichment(other, EnrichmentDataType::Company, &subject)
            .await,
        "get cache of other workspace",
    );
    assert_eq!(seen, None, "another workspace's cache entry is invisible");
    let spend = ok(
        store.enrichment_spend(other, january(), euro()).await,
        "spend",
    );
    assert_eq!(
        spend.minor_units(),
        0,
        "another workspace's spend is not counted"
    );
    let rows = ok(
        store.list_enrichment_usage(other, january(), 10).await,
        "list usage",
    );
    assert!(rows.is_empty(), "another workspace's usage is invisible");
    let totals = ok(
        store
            .record_enrichment_usage(&usage(other, 100, base()))
            .await,
        "record other usage",
    );
    assert_eq!(
        totals,
        SpendTotals {
            before: 0,
            after: 100
        },
        "each workspace has its own spend"
    );
}

/// Usage adds to the spend of its UTC month and currency and returns the totals just
/// before and after; a new month starts at zero; usage lists oldest first per month.
pub async fn enrichment_usage_accumulates_spend_per_month(store: &DynStore) {
    let ws = WorkspaceId::new();
    let record = |u: EnrichmentUsage| async move {
        ok(store.record_enrichment_usage(&u).await, "record usage")
    };
    assert_eq!(
        record(usage(ws, 300, base() + Duration::hours(1))).await,
        SpendTotals {
            before: 0,
            after: 300
        }
    );
    let mut miss = usage(ws, 0, base());
    miss.hit = false;
    miss.provider = "second".to_owned();
    assert_eq!(
        record(miss.clone()).await,
        SpendTotals {
            before: 300,
            after: 300
        },
        "a free miss is recorded without spend"
    );
    assert_eq!(
        record(usage(ws, 200, base() + Duration::hours(2))).await,
        SpendTotals {
            before: 300,
            after: 500
        }
    );
    let february = NaiveDate::from_ymd_opt(2026, 2, 1).expect("valid month");
    let feb_at = february.and_hms_opt(0, 0, 0).expect("valid time").and_utc();
    assert_eq!(
        record(usage(ws, 50, feb_at)).await,
        SpendTotals {
            before: 0,
            after: 50
        },
        "a new UTC month starts from zero"
    );
    let mut usd = usage(ws, 70, base());
    usd.cost = crm_core::money::Money::new(70, Currency::new("USD").expect("USD")).expect("cost");
    assert_eq!(
        record(usd).await,
        SpendTotals {
            before: 0,
            after: 70
        },
        "spend is kept per currency"
    );

    let spend = ok(store.enrichment_spend(ws, january(), euro()).await, "spend");
    assert_eq!(spend, eur(500));
    let rows = ok(
        store.list_enrichment_usage(ws, january(), 10).await,
        "list usage",
    );
    let costs: Vec<i64> = rows.iter().map(|u| u.cost.minor_units()).collect();
    assert_eq!(
        costs,
        vec![0, 70, 300, 200],
        "oldest first, then recording order"
    );
    assert_eq!(rows[0], miss, "a usage row reads back unchanged");
    let first_two = ok(
        store.list_enrichment_usage(ws, january(), 2).await,
        "list usage",
    );
    assert_eq!(first_two.len(), 2, "limit caps the rows");

    let mid_month = NaiveDate::from_ymd_opt(2026, 1, 15).expect("valid day");
    expect_err(
        store.enrichment_spend(ws, mid_month, euro()).await,
        Kind::Invalid,
        "a month is its first day",
    );
    expect_err(
        store.list_enrichment_usage(ws, january(), 0).await,
        Kind::Invalid,
        "limit 0 is Invalid",
    );
    let mut blank = usage(ws, 1, base());
    blank.provider = " ".to_owned();
    expect_err(
        store.record_enrichment_usage(&blank).await,
        Kind::Invalid,
        "a blank provider is Invalid",
    );
}

/// 32 racing recorders: the spend is the exact sum, and each saw a distinct running
/// total (so budget alerts computed from before/after fire once).
pub async fn concurrent_enrichment_spend_never_double_counts(store: &DynStore) {
    let ws = WorkspaceId::new();
    let totals = race(32, |_| async move {
        ok(
            store.record_enrichment_usage(&usage(ws, 10, base())).await,
            "record usage",
        )
    })
    .await;
    let afters: BTreeSet<i64> = totals.iter().map(|t| t.after).collect();
    assert_eq!(
        afters,
        (1..=32).map(|i| i * 10).collect(),
        "each recorder saw a distinct running total"
    );
    assert!(
        totals.iter().all(|t| t.after - t.before == 10),
        "before and after differ by exactly this usage's cost"
    );
    let spend = ok(store.enrichment_spend(ws, january(), euro()).await, "spend");
    assert_eq!(spend.minor_units(), 320, "no cost is lost or counted twice");
    let rows = ok(
        store.list_enrichment_usage(ws, january(), 100).await,
        "list usage",
    );
    assert_eq!(rows.len(), 32, "one usage row per lookup");
}
