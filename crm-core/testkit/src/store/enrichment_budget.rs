//! Cases for the enrichment spend reservations of
//! [`EnrichmentStore`](crm_core::store::EnrichmentStore): reserve before a provider
//! call, settle or release after, never past the cap.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::money::{Currency, Money};
use crm_core::store::{
    EnrichmentDataType, EnrichmentUsage, ReserveOutcome, SpendReservation, SpendReservationId,
    SpendTotals,
};

use super::fixtures::{at, base, eur, expect_err, ok, race};

fn january() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid month")
}

fn euro() -> Currency {
    Currency::new("EUR").expect("EUR")
}

/// A reservation of `amount` cents against `cap`, expiring 15 minutes after [`base`].
fn hold(ws: WorkspaceId, amount: i64, cap: Option<i64>) -> SpendReservation {
    SpendReservation {
        id: SpendReservationId::new(),
        workspace_id: ws,
        month: january(),
        amount: eur(amount),
        cap,
        expires_at: at(15),
    }
}

fn usage(ws: WorkspaceId, cost: Money, when: DateTime<Utc>) -> EnrichmentUsage {
    EnrichmentUsage {
        workspace_id: ws,
        provider: "scripted".to_owned(),
        data_type: EnrichmentDataType::Contact,
        hit: true,
        credits: 1,
        cost,
        at: when,
    }
}

async fn reserve(store: &DynStore, r: &SpendReservation, now: DateTime<Utc>) -> ReserveOutcome {
    ok(
        store.reserve_enrichment_spend(r, now).await,
        "reserve spend",
    )
}

async fn settle(store: &DynStore, r: &SpendReservation, cost: i64) -> SpendTotals {
    ok(
        store
            .settle_enrichment_spend(r.id, &usage(r.workspace_id, eur(cost), base()))
            .await,
        "settle spend",
    )
}

async fn spent(store: &DynStore, ws: WorkspaceId) -> i64 {
    ok(store.enrichment_spend(ws, january(), euro()).await, "spend").minor_units()
}

/// 40 racing reservations of 10 against a cap of 95: exactly 9 are granted, each
/// refusal reports the 90 held; then reserve-and-settle races against a cap of 100
/// spend exactly 100 with distinct running totals.
pub async fn concurrent_enrichment_reservations_never_exceed_the_cap(store: &DynStore) {
    let ws = WorkspaceId::new();
    let holds: Vec<SpendReservation> = (0..40).map(|_| hold(ws, 10, Some(95))).collect();
    let outcomes = race(40, |i| {
        let r = &holds[i];
        async move { reserve(store, r, base()).await }
    })
    .await;
    let granted: Vec<&SpendReservation> = holds
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == ReserveOutcome::Reserved)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(granted.len(), 9, "9 x 10 fit under 95, a 10th would not");
    for o in &outcomes {
        if let ReserveOutcome::Refused { spent, reserved } = o {
            assert_eq!(
                (*spent, *reserved),
                (0, 90),
                "a refusal reports the held amount"
            );
        }
    }
    for r in &granted {
        settle(store, r, 10).await;
    }
    assert_eq!(spent(store, ws).await, 90);
    let refused = reserve(store, &hold(ws, 10, Some(95)), base()).await;
    assert_eq!(
        refused,
        ReserveOutcome::Refused {
            spent: 90,
            reserved: 0
        }
    );
    let last = hold(ws, 5, Some(95));
    assert_eq!(
        reserve(store, &last, base()).await,
        ReserveOutcome::Reserved
    );
    settle(store, &last, 5).await;
    assert!(
        matches!(
            reserve(store, &hold(ws, 0, Some(95)), base()).await,
            ReserveOutcome::Refused { spent: 95, .. }
        ),
        "a spent budget refuses even a free call"
    );

    let other = WorkspaceId::new();
    let totals = race(30, |_| async move {
        let r = hold(other, 10, Some(100));
        match reserve(store, &r, base()).await {
            ReserveOutcome::Reserved => Some(settle(store, &r, 10).await),
            _ => None,
        }
    })
    .await;
    let afters: BTreeSet<i64> = totals.iter().flatten().map(|t| t.after).collect();
    assert_eq!(
        afters,
        (1..=10).map(|i| i * 10).collect(),
        "exactly 10 calls settled, each with a distinct running total"
    );
    assert_eq!(
        spent(store, other).await,
        100,
        "exactly the budget is spent"
    );
}

/// Settling below the reserved amount records the actual cost and frees the
/// difference at once; a settled reservation cannot be settled again; a settlement
/// of another month or currency, or above the reservation, is Invalid.
pub async fn settling_enrichment_spend_lower_releases_the_difference(store: &DynStore) {
    let ws = WorkspaceId::new();
    let r = hold(ws, 60, Some(100));
    assert_eq!(reserve(store, &r, base()).await, ReserveOutcome::Reserved);
    assert!(matches!(
        reserve(store, &hold(ws, 50, Some(100)), base()).await,
        ReserveOutcome::Refused {
            spent: 0,
            reserved: 60
        }
    ));

    let over = usage(ws, eur(61), base());
    expect_err(
        store.settle_enrichment_spend(r.id, &over).await,
        Kind::Invalid,
        "a settlement above the reserved amount",
    );
    let usd = Money::new(10, Currency::new("USD").expect("USD")).expect("money");
    expect_err(
        store
            .settle_enrichment_spend(r.id, &usage(ws, usd, base()))
            .await,
        Kind::Invalid,
        "a settlement in another currency",
    );
    let february = base() + Duration::days(31);
    expect_err(
        store
            .settle_enrichment_spend(r.id, &usage(ws, eur(10), february))
            .await,
        Kind::Invalid,
        "a settlement in another month",
    );
    expect_err(
        store
            .settle_enrichment_spend(r.id, &usage(WorkspaceId::new(), eur(10), base()))
            .await,
        Kind::NotFound,
        "another workspace's reservation",
    );

    let totals = settle(store, &r, 20).await;
    assert_eq!(
        (totals.before, totals.after),
        (0, 20),
        "the actual cost counts"
    );
    assert_eq!(spent(store, ws).await, 20);
    let rows = ok(
        store.list_enrichment_usage(ws, january(), 10).await,
        "usage",
    );
    assert_eq!(rows.len(), 1, "settling records one usage row");
    assert_eq!(rows[0].cost, eur(20));
    expect_err(
        store
            .settle_enrichment_spend(r.id, &usage(ws, eur(20), base()))
            .await,
        Kind::NotFound,
        "a reservation is settled once",
    );
    let rest = hold(ws, 80, Some(100));
    assert_eq!(
        reserve(store, &rest, base()).await,
        ReserveOutcome::Reserved,
        "the unspent 40 came back: 20 + 80 fits"
    );
}

/// A released reservation stops counting at once and cannot be settled; releasing is
/// idempotent and scoped to the workspace; an id is reserved once; without a cap
/// every reservation is granted.
pub async fn released_enrichment_spend_is_given_back(store: &DynStore) {
    let ws = WorkspaceId::new();
    let r = hold(ws, 100, Some(100));
    assert_eq!(reserve(store, &r, base()).await, ReserveOutcome::Reserved);
    expect_err(
        store.reserve_enrichment_spend(&r, base()).await,
        Kind::Conflict,
        "a reservation id is used once",
    );
    ok(
        store
            .release_enrichment_spend(WorkspaceId::new(), r.id)
            .await,
        "release from another workspace",
    );
    assert!(
        matches!(
            reserve(store, &hold(ws, 1, Some(100)), base()).await,
            ReserveOutcome::Refused { reserved: 100, .. }
        ),
        "another workspace cannot release it"
    );
    ok(store.release_enrichment_spend(ws, r.id).await, "release");
    ok(
        store.release_enrichment_spend(ws, r.id).await,
        "release again",
    );
    expect_err(
        store
            .settle_enrichment_spend(r.id, &usage(ws, eur(0), base()))
            .await,
        Kind::NotFound,
        "a released reservation cannot be settled",
    );
    assert_eq!(spent(store, ws).await, 0, "a release spends nothing");
    assert_eq!(
        reserve(store, &hold(ws, 100, Some(100)), base()).await,
        ReserveOutcome::Reserved,
        "the whole budget is free again"
    );

    let free = WorkspaceId::new();
    for _ in 0..3 {
        assert_eq!(
            reserve(store, &hold(free, 1000, None), base()).await,
            ReserveOutcome::Reserved,
            "no cap, no refusal"
        );
    }
    let mut bad = hold(ws, 1, Some(100));
    bad.month = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
    expect_err(
        store.reserve_enrichment_spend(&bad, base()).await,
        Kind::Invalid,
        "a month is a first day of month",
    );
}

/// A reservation never settled stops counting at its `expires_at`; settled late, its
/// cost still counts (the call happened), even past the cap.
pub async fn expired_enrichment_reservations_stop_counting(store: &DynStore) {
    let ws = WorkspaceId::new();
    let stale = hold(ws, 100, Some(100));
    assert_eq!(
        reserve(store, &stale, base()).await,
        ReserveOutcome::Reserved
    );
    assert!(
        matches!(
            reserve(store, &hold(ws, 1, Some(100)), at(14)).await,
            ReserveOutcome::Refused { reserved: 100, .. }
        ),
        "live until it expires"
    );
    let mut fresh = hold(ws, 50, Some(100));
    fresh.expires_at = at(30);
    assert_eq!(
        reserve(store, &fresh, at(15)).await,
        ReserveOutcome::Reserved,
        "at expires_at the stale reservation no longer counts"
    );
    let late = settle(store, &stale, 100).await;
    assert_eq!(
        (late.before, late.after),
        (0, 100),
        "a late settle still counts"
    );
    let totals = settle(store, &fresh, 50).await;
    assert_eq!((totals.before, totals.after), (100, 150));
    assert!(matches!(
        reserve(store, &hold(ws, 0, Some(100)), at(16)).await,
        ReserveOutcome::Refused { spent: 150, .. }
    ));
}
