//! The exact budget: every provider call reserves its price first, so racing lookups
//! never spend past the budget, and calls that fail or are skipped give it back.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;

use crate::enrichment::{CallLog, Script, ScriptedProvider};
use crate::store::fixtures::{eur, race};
use crm_core::DynStore;
use crm_core::address::{Domain, EmailAddress};
use crm_core::enrichment::rate_limit::{RateLimit, RateLimiter};
use crm_core::enrichment::{
    AttemptResult, BudgetPolicy, CompanyData, ContactData, ContactQuery, EmailVerification,
    EnricherError, EnrichmentError, EnrichmentProvider, Lookup, LookupCost, LookupKind,
    RateLimitState, Source, Waterfall,
};
use crm_core::ids::WorkspaceId;
use crm_core::model::Event;
use crm_core::store::{Scope, month_of};

use super::{chain, clock, enricher, query};

/// A [`ScriptedProvider`] that takes `delay` to answer, so racing lookups overlap.
#[derive(Debug)]
struct Slow {
    inner: ScriptedProvider,
    delay: StdDuration,
}

#[async_trait]
impl EnrichmentProvider for Slow {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn kinds(&self) -> &'static [LookupKind] {
        self.inner.kinds()
    }

    fn cost(&self, kind: LookupKind) -> LookupCost {
        self.inner.cost(kind)
    }

    fn rate_limit(&self) -> RateLimitState {
        self.inner.rate_limit()
    }

    async fn enrich_contact(
        &self,
        query: &ContactQuery,
    ) -> Result<Lookup<ContactData>, EnrichmentError> {
        tokio::time::sleep(self.delay).await;
        self.inner.enrich_contact(query).await
    }

    async fn enrich_company(
        &self,
        domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        tokio::time::sleep(self.delay).await;
        self.inner.enrich_company(domain).await
    }

    async fn verify_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Lookup<EmailVerification>, EnrichmentError> {
        tokio::time::sleep(self.delay).await;
        self.inner.verify_email(email).await
    }
}

/// The budget events of `ws` as (kind, percent, spent), sorted.
async fn budget_events(store: &DynStore, ws: WorkspaceId) -> Vec<(String, u64, i64)> {
    let events: Vec<Event> = store
        .list_events(Scope::Workspace(ws), 0, 1000)
        .await
        .expect("list events");
    let mut out: Vec<_> = events
        .into_iter()
        .filter(|e| e.kind.starts_with("enrichment.budget"))
        .map(|e| {
            let percent = e.payload["percent"].as_u64().expect("percent");
            let spent = e.payload["spent_minor_units"].as_i64().expect("spent");
            (e.kind, percent, spent)
        })
        .collect();
    out.sort();
    out
}

fn event(percent: u64, spent: i64) -> (String, u64, i64) {
    let kind = if percent == 100 {
        "enrichment.budget_exhausted"
    } else {
        "enrichment.budget_alert"
    };
    (kind.to_owned(), percent, spent)
}

async fn spent(store: &DynStore, ws: WorkspaceId, clock: &crm_core::clock::ManualClock) -> i64 {
    use crm_core::clock::Clock;
    store
        .enrichment_spend(
            ws,
            month_of(clock.now()),
            crm_core::money::Currency::new("EUR").expect("EUR"),
        )
        .await
        .expect("spend")
        .minor_units()
}

/// 20 racing lookups against a slow provider costing 20 and a budget of 100: exactly
/// 5 provider calls are made, 15 lookups answer BudgetExhausted, exactly the budget is
/// spent, and the 50, 75, 90 and 100 % events fire once each on settled spend.
pub async fn concurrent_lookups_never_overshoot_the_budget(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let slow = Arc::new(Slow {
        inner: ScriptedProvider::new("slow", &log)
            .answering(LookupKind::Contact, Script::Hit)
            .costing(eur(20)),
        delay: StdDuration::from_millis(100),
    });
    let waterfall = Waterfall::new().then(LookupKind::Contact, slow);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall).with_budget(ws, BudgetPolicy::new(eur(100)));
    let enricher = &enricher;
    let results = race(20, |_| async move {
        enricher.enrich_contact(ws, &query()).await
    })
    .await;
    let hits = results
        .iter()
        .filter(|r| matches!(r, Ok(e) if e.source == Source::Provider("slow")))
        .count();
    let paused = results
        .iter()
        .filter(|r| matches!(r, Err(EnricherError::BudgetExhausted { .. })))
        .count();
    assert_eq!((hits, paused), (5, 15), "{results:?}");
    assert_eq!(log.names().len(), 5, "exactly 5 provider calls");
    assert_eq!(spent(&*store, ws, &clock).await, 100, "exactly the budget");
    let events = budget_events(&*store, ws).await;
    let percents: Vec<u64> = events.iter().map(|e| e.1).collect();
    assert_eq!(
        percents,
        vec![50, 75, 90, 100],
        "each threshold once: {events:?}"
    );
    assert!(
        events.iter().all(|e| e.2 <= 100),
        "alerts report settled spend, never past the budget"
    );
    assert!(events.contains(&event(100, 100)));
}

/// A call whose price no longer fits is not made, even below 100 %; with nothing in
/// flight that means the budget is spent for this price, so the 100 % event fires
/// (once) with the settled spend.
pub async fn budget_refuses_a_call_it_cannot_pay(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 20);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall).with_budget(ws, BudgetPolicy::new(eur(50)));
    for _ in 0..2 {
        enricher.enrich_contact(ws, &query()).await.expect("fits");
    }
    for _ in 0..2 {
        let err = enricher
            .enrich_contact(ws, &query())
            .await
            .expect_err("20 more would pass 50");
        assert!(
            matches!(err, EnricherError::BudgetExhausted { .. }),
            "{err:?}"
        );
    }
    assert_eq!(log.names().len(), 2, "the refused calls were not made");
    assert_eq!(
        spent(&*store, ws, &clock).await,
        40,
        "never past the budget"
    );
    assert_eq!(
        budget_events(&*store, ws).await,
        vec![event(50, 40), event(75, 40), event(100, 40)],
        "50 and 75 % crossed by settled spend, 100 % on the refusal, each once"
    );
}

/// Failed and rate-limited calls release their reservation at once: with a budget
/// of exactly one call, a skipped call leaves the budget for the next provider, and a
/// failed call leaves it for the next lookup.
pub async fn failed_and_skipped_calls_give_their_reservation_back(store: Arc<DynStore>) {
    let log = CallLog::new();
    let (waterfall, providers) = chain(
        &log,
        LookupKind::Contact,
        &[
            ("limited", Script::Hit),
            ("flaky", Script::Fail { retryable: true }),
        ],
        20,
    );
    let clock = clock();
    let limiter = RateLimiter::new().with_limit("limited", RateLimit::new(1, Duration::minutes(1)));
    let ws = WorkspaceId::new();
    let enricher = enricher(&store, &clock, waterfall)
        .with_rate_limiter(limiter)
        .with_budget(ws, BudgetPolicy::new(eur(20)));
    let warm = enricher
        .enrich_contact(WorkspaceId::new(), &query())
        .await
        .expect("no budget");
    assert_eq!(
        warm.source,
        Source::Provider("limited"),
        "its one call a minute"
    );

    let err = enricher
        .enrich_contact(ws, &query())
        .await
        .expect_err("limited is skipped, flaky fails");
    assert!(
        matches!(err, EnricherError::ProvidersFailed { .. }),
        "the skipped call gave the 20 back, so flaky was asked: {err:?}"
    );
    assert_eq!(spent(&*store, ws, &clock).await, 0, "nothing was spent");

    providers[1].set(LookupKind::Contact, Script::Hit);
    let got = enricher
        .enrich_contact(ws, &query())
        .await
        .expect("the failed call gave its 20 back");
    assert_eq!(got.source, Source::Provider("flaky"));
    assert_eq!(
        got.attempts.first().map(|a| a.result),
        Some(AttemptResult::RateLimited)
    );
    assert_eq!(spent(&*store, ws, &clock).await, 20);
    assert_eq!(log.names(), vec!["limited", "flaky", "flaky"]);
}
