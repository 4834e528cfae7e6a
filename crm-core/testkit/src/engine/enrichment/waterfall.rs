//! Waterfall order, stop at first hit, cache TTLs, usage, rate limits, bulk runs.

use std::sync::Arc;

use chrono::Duration;

use crate::enrichment::{CallLog, Script};
use crate::store::fixtures::{unique_domain, unique_email};
use crm_core::DynStore;
use crm_core::address::{Domain, EmailAddress};
use crm_core::clock::Clock;
use crm_core::enrichment::{
    Attempt, AttemptResult, BulkConfirmation, EnricherError, LookupKind, RateLimit, RateLimiter,
    Source,
};
use crm_core::ids::WorkspaceId;
use crm_core::store::month_of;

use super::{chain, clock, enricher, query};

fn attempt(provider: &'static str, result: AttemptResult) -> Attempt {
    Attempt { provider, result }
}

/// Providers are asked in waterfall order per kind; the first hit answers and the
/// providers after it are never asked.
pub async fn waterfall_asks_in_order_and_stops_at_first_hit(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[("a", Script::Miss), ("b", Script::Hit), ("c", Script::Hit)],
        0,
    );
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall);
    let got = enricher.enrich_contact(ws, &query()).await.expect("enrich");
    assert_eq!(log.names(), vec!["a", "b"], "asked in order, stopped at b");
    assert_eq!(got.source, Source::Provider("b"), "the first hit answers");
    assert_eq!(got.data.and_then(|d| d.title).as_deref(), Some("b"));
    assert_eq!(
        got.attempts,
        vec![
            attempt("a", AttemptResult::Miss),
            attempt("b", AttemptResult::Hit)
        ]
    );

    // Each kind has its own chain: a company lookup with no company providers misses
    // without asking anyone.
    let domain = Domain::parse(&unique_domain()).expect("domain");
    let company = enricher.enrich_company(ws, &domain).await.expect("company");
    assert_eq!(company.data, None, "no providers for the kind: a miss");
    assert_eq!(
        log.names().len(),
        2,
        "no provider was asked for the other kind"
    );
}

/// A failing provider does not stop the waterfall; when every provider fails the
/// lookup fails, retryable if any failure was.
pub async fn waterfall_moves_past_failures(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[
            ("down", Script::Fail { retryable: true }),
            ("broken", Script::Fail { retryable: false }),
            ("last", Script::Hit),
        ],
        0,
    );
    let clock = clock();
    let got = enricher(&store, &clock, waterfall)
        .enrich_contact(ws, &query())
        .await
        .expect("a later provider answers");
    assert_eq!(got.source, Source::Provider("last"));
    assert_eq!(log.names(), vec!["down", "broken", "last"]);

    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[
            ("down", Script::Fail { retryable: true }),
            ("broken", Script::Fail { retryable: false }),
        ],
        0,
    );
    let err = enricher(&store, &clock, waterfall)
        .enrich_contact(ws, &query())
        .await
        .expect_err("every provider failed");
    assert!(
        matches!(
            err,
            EnricherError::ProvidersFailed {
                retryable: true,
                ..
            }
        ),
        "all failed, one transiently: {err:?}"
    );
    assert!(err.is_retryable());

    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[
            ("down", Script::Fail { retryable: true }),
            ("empty", Script::Miss),
        ],
        0,
    );
    let got = enricher(&store, &clock, waterfall)
        .enrich_contact(ws, &query())
        .await
        .expect("a miss after a failure is a miss, not an error");
    assert_eq!(got.data, None);
    assert_eq!(got.source, Source::None);
}

/// A hit is cached: contact data for 30 days, email verification for 7, company data
/// for 30; within the TTL no provider is asked, at the TTL the waterfall runs again.
pub async fn cache_serves_until_each_ttl_expires(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (mut waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 0);
    let (email_chain, _e) = chain(
        &log,
        LookupKind::EmailVerification,
        &[("v", Script::Hit)],
        0,
    );
    let (company_chain, _c) = chain(&log, LookupKind::Company, &[("co", Script::Hit)], 0);
    for (kind, providers) in [
        (LookupKind::EmailVerification, email_chain),
        (LookupKind::Company, company_chain),
    ] {
        for p in providers.chain(kind) {
            waterfall = waterfall.then(kind, p.clone());
        }
    }
    let clock = clock();
    let start = clock.now();
    let enricher = enricher(&store, &clock, waterfall);
    let q = query();
    let email = EmailAddress::parse(&unique_email()).expect("email");
    let domain = Domain::parse(&unique_domain()).expect("domain");

    enricher.enrich_contact(ws, &q).await.expect("first");
    enricher.verify_email(ws, &email).await.expect("first");
    enricher.enrich_company(ws, &domain).await.expect("first");
    assert_eq!(log.names(), vec!["p", "v", "co"]);

    clock.set(start + Duration::days(7) - Duration::seconds(1));
    let cached = enricher.verify_email(ws, &email).await.expect("cached");
    assert!(
        matches!(&cached.source, Source::Cache { provider, fetched_at } if provider == "v" && *fetched_at == start),
        "fresh verification served from cache: {:?}",
        cached.source
    );
    assert!(cached.data.is_some(), "the cached data is returned");
    assert!(cached.attempts.is_empty(), "a cache hit asks nobody");

    clock.set(start + Duration::days(7));
    enricher.verify_email(ws, &email).await.expect("expired");
    let cached = enricher.enrich_contact(ws, &q).await.expect("cached");
    assert!(
        matches!(cached.source, Source::Cache { .. }),
        "contact still fresh at 7 days"
    );
    assert_eq!(
        log.names(),
        vec!["p", "v", "co", "v"],
        "verification expired at 7 days"
    );

    clock.set(start + Duration::days(30) - Duration::seconds(1));
    enricher.enrich_contact(ws, &q).await.expect("cached");
    enricher.enrich_company(ws, &domain).await.expect("cached");
    assert_eq!(
        log.names().len(),
        4,
        "contact and company fresh until 30 days"
    );

    clock.set(start + Duration::days(30));
    let refreshed = enricher.enrich_contact(ws, &q).await.expect("expired");
    assert_eq!(
        refreshed.source,
        Source::Provider("p"),
        "contact expired at 30 days"
    );
    enricher.enrich_company(ws, &domain).await.expect("expired");
    assert_eq!(log.names(), vec!["p", "v", "co", "v", "p", "co"]);

    // The refreshed entry counts from its new fetch time.
    clock.set(start + Duration::days(31));
    let again = enricher.enrich_contact(ws, &q).await.expect("cached");
    assert!(matches!(again.source, Source::Cache { .. }));

    // Another workspace never sees this workspace's cache.
    let other = enricher
        .enrich_contact(WorkspaceId::new(), &q)
        .await
        .expect("other");
    assert_eq!(
        other.source,
        Source::Provider("p"),
        "the cache is per workspace"
    );
}

/// Every answered lookup (hit or miss) is one usage row with its provider, kind, cost
/// and hit flag; the month's spend is their sum; a cache hit records nothing.
pub async fn usage_and_cost_recorded_per_lookup(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(
        &log,
        LookupKind::Contact,
        &[("cheap", Script::Miss), ("pricey", Script::Hit)],
        15,
    );
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall);
    let q = query();
    enricher.enrich_contact(ws, &q).await.expect("enrich");
    enricher.enrich_contact(ws, &q).await.expect("cached");
    let month = month_of(clock.now());
    let rows = store
        .list_enrichment_usage(ws, month, 10)
        .await
        .expect("usage");
    let summary: Vec<(&str, bool, i64)> = rows
        .iter()
        .map(|u| (u.provider.as_str(), u.hit, u.cost.minor_units()))
        .collect();
    assert_eq!(summary, vec![("cheap", false, 15), ("pricey", true, 15)]);
    assert!(
        rows.iter()
            .all(|u| u.data_type == LookupKind::Contact.into() && u.credits == 1)
    );
    let currency = rows[0].cost.currency();
    let spend = store
        .enrichment_spend(ws, month, currency)
        .await
        .expect("spend");
    assert_eq!(
        spend.minor_units(),
        30,
        "spend is the sum of the lookups' costs"
    );
}

/// A provider over its rate limit is skipped (the next one answers) until its window
/// passes; a provider reporting no requests left is skipped until its reset.
pub async fn rate_limited_provider_is_skipped_until_its_window(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, providers) = chain(
        &log,
        LookupKind::Contact,
        &[("limited", Script::Hit), ("backup", Script::Hit)],
        0,
    );
    let clock = clock();
    let limiter = RateLimiter::new().with_limit("limited", RateLimit::new(1, Duration::minutes(1)));
    let enricher = enricher(&store, &clock, waterfall).with_rate_limiter(limiter);

    let first = enricher.enrich_contact(ws, &query()).await.expect("first");
    assert_eq!(first.source, Source::Provider("limited"));
    let second = enricher.enrich_contact(ws, &query()).await.expect("second");
    assert_eq!(
        second.source,
        Source::Provider("backup"),
        "the limited one is skipped"
    );
    assert_eq!(
        second.attempts[0],
        attempt("limited", AttemptResult::RateLimited)
    );
    assert_eq!(
        log.names(),
        vec!["limited", "backup"],
        "a skipped provider is not called"
    );

    clock.advance(Duration::minutes(1));
    providers[0].report_rate_limit(crm_core::enrichment::RateLimitState {
        limit: Some(100),
        remaining: Some(0),
        reset_after: Some(std::time::Duration::from_secs(600)),
    });
    let third = enricher.enrich_contact(ws, &query()).await.expect("third");
    assert_eq!(
        third.source,
        Source::Provider("limited"),
        "a new window allows it"
    );
    let fourth = enricher.enrich_contact(ws, &query()).await.expect("fourth");
    clock.advance(Duration::minutes(5));
    let fifth = enricher.enrich_contact(ws, &query()).await.expect("fifth");
    assert_eq!(
        fourth.source,
        Source::Provider("backup"),
        "it reported none left"
    );
    assert_eq!(
        fifth.source,
        Source::Provider("backup"),
        "until its reset time"
    );
}

/// More than 100 records need a confirmation of exactly that many; without it
/// nothing is looked up. 100 records need none.
pub async fn bulk_over_100_needs_confirmation(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Miss)], 0);
    let clock = clock();
    let enricher = enricher(&store, &clock, waterfall);
    let many: Vec<_> = (0..101).map(|_| query()).collect();

    let err = enricher
        .enrich_contacts_bulk(ws, &many, None)
        .await
        .expect_err("101 records need a confirmation");
    assert!(matches!(
        err,
        EnricherError::ConfirmationRequired {
            records: 101,
            threshold: 100
        }
    ));
    let stale = BulkConfirmation::new(100, "ada");
    assert!(
        enricher
            .enrich_contacts_bulk(ws, &many, Some(&stale))
            .await
            .is_err(),
        "a confirmation for another count is refused"
    );
    assert!(
        log.calls().is_empty(),
        "nothing was looked up without confirmation"
    );

    let hundred = &many[..100];
    let results = enricher
        .enrich_contacts_bulk(ws, hundred, None)
        .await
        .expect("100 records need no confirmation");
    assert_eq!(results.len(), 100);
    let confirmed = BulkConfirmation::new(101, "ada");
    let results = enricher
        .enrich_contacts_bulk(ws, &many, Some(&confirmed))
        .await
        .expect("confirmed");
    assert_eq!(results.len(), 101, "one result per record");
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(log.calls().len(), 201);
}
