//! The orchestrator: cache first, then the waterfall, with usage, spend, budget alerts
//! and the pause at 100 % written back to the store.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::address::{Domain, EmailAddress};
use crate::clock::Clock;
use crate::enrichment::budget::{
    ALERT_EVENT, BudgetPolicy, DEFAULT_RESERVATION_TTL, EXHAUSTED_EVENT, EXHAUSTED_PERCENT,
    alert_idempotency_key, month_label,
};
use crate::enrichment::cache::{CachePolicy, company_subject, contact_subject, email_subject};
use crate::enrichment::rate_limit::RateLimiter;
use crate::enrichment::waterfall::{Attempt, AttemptResult, Waterfall};
use crate::enrichment::{
    CompanyData, ContactData, ContactQuery, EmailVerification, EnricherError, EnrichmentError,
    EnrichmentProvider, Lookup, LookupKind, RateLimitState,
};
use crate::ids::WorkspaceId;
use crate::model::NewEvent;
use crate::money::{Currency, Money};
use crate::store::{
    CachedEnrichment, EnricherStore, EnrichmentDataType, EnrichmentUsage, EventStoreExt,
    ReserveOutcome, SpendReservation, SpendReservationId, SpendTotals, month_of,
};

mod social;

pub use social::SocialLinks;

/// The largest bulk run that needs no [`BulkConfirmation`].
pub const BULK_CONFIRMATION_THRESHOLD: usize = 100;

/// An explicit "yes, enrich this many records" for a bulk run of more than
/// [`BULK_CONFIRMATION_THRESHOLD`] records.
///
/// The approval inbox of this codebase holds outbox messages only, so bulk enrichment
/// is confirmed with this value instead: the host asks its user, then passes the
/// confirmation with the exact record count (a stale confirmation for another count is
/// refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkConfirmation {
    /// The number of records the user confirmed.
    pub records: usize,
    /// Who confirmed (a user id or name, for the host's audit).
    pub confirmed_by: String,
}

impl BulkConfirmation {
    /// A confirmation of `records` records by `confirmed_by`.
    #[must_use]
    pub fn new(records: usize, confirmed_by: impl Into<String>) -> Self {
        Self {
            records,
            confirmed_by: confirmed_by.into(),
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A fresh cache entry, first fetched from `provider` at `fetched_at`.
    Cache {
        /// The provider that originally answered.
        provider: String,
        /// When it answered.
        fetched_at: DateTime<Utc>,
    },
    /// A provider answered now.
    Provider(&'static str),
    /// No provider had data.
    None,
}

/// The answer of one orchestrated lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched<T> {
    /// The data, or `None` if every provider missed.
    pub data: Option<T>,
    /// Where it came from.
    pub source: Source,
    /// The providers of the waterfall in the order they were considered (empty for a
    /// cache hit).
    pub attempts: Vec<Attempt>,
}

impl Enriched<Value> {
    fn decode<T: DeserializeOwned>(self) -> Result<Enriched<T>, EnricherError> {
        let data = self
            .data
            .map(serde_json::from_value)
            .transpose()
            .map_err(EnricherError::Data)?;
        Ok(Enriched {
            data,
            source: self.source,
            attempts: self.attempts,
        })
    }
}

/// One lookup to run through the waterfall.
#[derive(Clone, Copy)]
enum Request<'a> {
    Contact(&'a ContactQuery),
    Company(&'a Domain),
    Email(&'a EmailAddress),
}

fn to_json<T: Serialize>(lookup: Lookup<T>) -> Result<Option<Value>, EnricherError> {
    match lookup {
        Lookup::Found(data) => serde_json::to_value(data)
            .map(Some)
            .map_err(EnricherError::Data),
        Lookup::NotFound => Ok(None),
    }
}

impl Request<'_> {
    fn kind(&self) -> LookupKind {
        match self {
            Self::Contact(_) => LookupKind::Contact,
            Self::Company(_) => LookupKind::Company,
            Self::Email(_) => LookupKind::EmailVerification,
        }
    }

    /// Asks `provider`; the outer error is ours (data), the inner the provider's.
    async fn call(
        &self,
        provider: &dyn EnrichmentProvider,
    ) -> Result<Result<Option<Value>, EnrichmentError>, EnricherError> {
        let answer = match self {
            Self::Contact(q) => provider.enrich_contact(q).await.map(to_json),
            Self::Company(d) => provider.enrich_company(d).await.map(to_json),
            Self::Email(e) => provider.verify_email(e).await.map(to_json),
        };
        match answer {
            Ok(converted) => converted.map(Ok),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// The enrichment orchestrator.
///
/// For each lookup: a fresh cache entry ([`CachePolicy`]) answers without asking
/// anyone; otherwise the providers of the [`Waterfall`] for the lookup's kind are asked
/// in order until the first hit, skipping those over their rate limit
/// ([`RateLimiter`]). Every answered provider call (hit or miss) is recorded as usage
/// with its cost, atomically added to the month's spend; a hit is cached. Misses are
/// not cached (a provider may learn the subject later), so asking again asks the
/// waterfall again. Failed calls cost nothing and are not recorded; the waterfall moves
/// past them, and only when every provider failed does the lookup fail
/// ([`EnricherError::ProvidersFailed`]).
///
/// # Budget
/// Before each provider call the enricher reserves the call's price against the
/// month's budget ([`EnrichmentStore::reserve_enrichment_spend`]); after the call it
/// settles the reservation with the recorded usage, or releases it if the call failed
/// or was skipped. With the pause on ([`BudgetPolicy`]), the store refuses a
/// reservation that does not fit next to the settled spend and the calls in flight,
/// and the lookup answers [`EnricherError::BudgetExhausted`] without asking the
/// provider (cache hits are still served): concurrent lookups never spend past the
/// budget. Alerts fire as events on settled spend, once each (their idempotency keys
/// hold that across retries and processes). The 100 % event also fires when a
/// reservation is refused with nothing in flight: the settled spend alone leaves too
/// little for the call, so the budget is spent for that price even if the total is
/// short of 100 %. A reservation whose caller dies mid-call stops counting after the
/// reservation TTL ([`DEFAULT_RESERVATION_TTL`], [`Enricher::with_reservation_ttl`]).
///
/// [`EnrichmentStore::reserve_enrichment_spend`]: crate::store::EnrichmentStore::reserve_enrichment_spend
///
/// Budgets are per workspace and given by the host ([`Enricher::with_budget`],
/// [`Enricher::with_default_budget`]); a workspace without one is not limited, and its
/// costs are recorded in the provider's currency (or `XXX`, "no currency", when the
/// provider names no price).
#[derive(Debug)]
pub struct Enricher {
    store: Arc<dyn EnricherStore>,
    clock: Arc<dyn Clock>,
    waterfall: Waterfall,
    cache: CachePolicy,
    limiter: RateLimiter,
    default_budget: Option<BudgetPolicy>,
    budgets: HashMap<WorkspaceId, BudgetPolicy>,
    reservation_ttl: Duration,
}

impl Enricher {
    /// An orchestrator over `waterfall` with the default cache policy, no rate limits
    /// and no budgets.
    #[must_use]
    pub fn new(store: Arc<dyn EnricherStore>, clock: Arc<dyn Clock>, waterfall: Waterfall) -> Self {
        Self {
            store,
            clock,
            waterfall,
            cache: CachePolicy::default(),
            limiter: RateLimiter::new(),
            default_budget: None,
            budgets: HashMap::new(),
            reservation_ttl: DEFAULT_RESERVATION_TTL,
        }
    }

    /// How long a spend reservation holds budget if the call that made it never
    /// settles or releases it (default [`DEFAULT_RESERVATION_TTL`]). Keep it above the
    /// longest provider call: a reservation that expires mid-call stops counting, and
    /// its late settlement may then pass the budget.
    #[must_use]
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// Uses `cache` for freshness.
    #[must_use]
    pub fn with_cache_policy(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Uses `limiter` for provider rate limits.
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// The budget of every workspace without its own.
    #[must_use]
    pub fn with_default_budget(mut self, budget: BudgetPolicy) -> Self {
        self.default_budget = Some(budget);
        self
    }

    /// The budget of `workspace_id`.
    #[must_use]
    pub fn with_budget(mut self, workspace_id: WorkspaceId, budget: BudgetPolicy) -> Self {
        self.budgets.insert(workspace_id, budget);
        self
    }

    fn budget(&self, workspace_id: WorkspaceId) -> Option<&BudgetPolicy> {
        self.budgets
            .get(&workspace_id)
            .or(self.default_budget.as_ref())
    }

    /// Person data for `query` (by email, or by name and domain).
    pub async fn enrich_contact(
        &self,
        workspace_id: WorkspaceId,
        query: &ContactQuery,
    ) -> Result<Enriched<ContactData>, EnricherError> {
        let subject = contact_subject(query)?;
        self.run(workspace_id, Request::Contact(query), subject)
            .await?
            .decode()
    }

    /// Company data for `domain`.
    pub async fn enrich_company(
        &self,
        workspace_id: WorkspaceId,
        domain: &Domain,
    ) -> Result<Enriched<CompanyData>, EnricherError> {
        let subject = company_subject(domain);
        self.run(workspace_id, Request::Company(domain), subject)
            .await?
            .decode()
    }

    /// The deliverability of `email`.
    pub async fn verify_email(
        &self,
        workspace_id: WorkspaceId,
        email: &EmailAddress,
    ) -> Result<Enriched<EmailVerification>, EnricherError> {
        let subject = email_subject(email);
        self.run(workspace_id, Request::Email(email), subject)
            .await?
            .decode()
    }

    /// Enriches several contacts one after the other, with one result per query in
    /// order. More than [`BULK_CONFIRMATION_THRESHOLD`] queries need a `confirmation`
    /// for exactly that many records, else [`EnricherError::ConfirmationRequired`] and
    /// nothing is looked up.
    pub async fn enrich_contacts_bulk(
        &self,
        workspace_id: WorkspaceId,
        queries: &[ContactQuery],
        confirmation: Option<&BulkConfirmation>,
    ) -> Result<Vec<Result<Enriched<ContactData>, EnricherError>>, EnricherError> {
        let confirmed = confirmation.is_some_and(|c| c.records == queries.len());
        if queries.len() > BULK_CONFIRMATION_THRESHOLD && !confirmed {
            return Err(EnricherError::ConfirmationRequired {
                records: queries.len(),
                threshold: BULK_CONFIRMATION_THRESHOLD,
            });
        }
        let mut results = Vec::with_capacity(queries.len());
        for query in queries {
            results.push(self.enrich_contact(workspace_id, query).await);
        }
        Ok(results)
    }

    async fn run(
        &self,
        workspace_id: WorkspaceId,
        request: Request<'_>,
        subject: String,
    ) -> Result<Enriched<Value>, EnricherError> {
        let kind = request.kind();
        let data_type = kind.into();
        let now = self.clock.now();
        let cached = self
            .store
            .get_cached_enrichment(workspace_id, data_type, &subject)
            .await?;
        if let Some(entry) = cached.filter(|e| self.cache.is_fresh(data_type, e.fetched_at, now)) {
            return Ok(Enriched {
                data: Some(entry.payload),
                source: Source::Cache {
                    provider: entry.provider,
                    fetched_at: entry.fetched_at,
                },
                attempts: Vec::new(),
            });
        }

        let month = month_of(now);
        let budget = self.budget(workspace_id);
        let mut attempts = Vec::new();
        let mut failure: Option<(EnrichmentError, bool)> = None;
        let mut answered = false;
        for provider in self.waterfall.chain(kind) {
            let name = provider.name();
            let cost = price(provider.as_ref(), kind, budget)?;
            let reservation = SpendReservation {
                id: SpendReservationId::new(),
                workspace_id,
                month,
                amount: cost.1,
                cap: budget
                    .filter(|b| b.pause_at_limit)
                    .map(|b| b.monthly.minor_units()),
                expires_at: now + self.reservation_ttl,
            };
            let reserved = self
                .store
                .reserve_enrichment_spend(&reservation, now)
                .await?;
            if let ReserveOutcome::Refused { spent, reserved } = reserved {
                if let Some(b) = budget
                    && reserved == 0
                {
                    self.fire_alert(workspace_id, b, month, EXHAUSTED_PERCENT, spent, now)
                        .await?;
                }
                return Err(EnricherError::BudgetExhausted {
                    month: month_label(month),
                });
            }
            if !self.limiter.try_acquire(name, now) {
                self.release(workspace_id, reservation.id).await;
                attempts.push(Attempt {
                    provider: name,
                    result: AttemptResult::RateLimited,
                });
                continue;
            }
            let answer = match request.call(provider.as_ref()).await {
                Ok(answer) => answer,
                Err(error) => {
                    self.release(workspace_id, reservation.id).await;
                    return Err(error);
                }
            };
            self.limiter.observe(name, &provider.rate_limit(), now);
            let found = match answer {
                Ok(found) => found,
                Err(error) => {
                    self.release(workspace_id, reservation.id).await;
                    if let EnrichmentError::RateLimited { retry_after, .. } = &error {
                        let state = RateLimitState {
                            limit: None,
                            remaining: Some(0),
                            reset_after: *retry_after,
                        };
                        self.limiter.observe(name, &state, now);
                    }
                    let retryable = error.is_retryable();
                    tracing::debug!(provider = name, %workspace_id, retryable, "enrichment lookup failed");
                    attempts.push(Attempt {
                        provider: name,
                        result: AttemptResult::Failed { retryable },
                    });
                    let any_retryable = retryable || failure.as_ref().is_some_and(|f| f.1);
                    failure = Some((error, any_retryable));
                    continue;
                }
            };
            answered = true;
            let usage = EnrichmentUsage {
                workspace_id,
                provider: name.to_owned(),
                data_type,
                hit: found.is_some(),
                credits: cost.0,
                cost: cost.1,
                at: now,
            };
            let totals = self
                .store
                .settle_enrichment_spend(reservation.id, &usage)
                .await?;
            if let Some(b) = budget {
                self.fire_alerts(workspace_id, b, month, totals, now)
                    .await?;
            }
            let result = if found.is_some() {
                AttemptResult::Hit
            } else {
                AttemptResult::Miss
            };
            attempts.push(Attempt {
                provider: name,
                result,
            });
            let (true, Some(payload)) = (result.stops(), found) else {
                continue;
            };
            let entry = CachedEnrichment {
                workspace_id,
                data_type,
                subject,
                provider: name.to_owned(),
                payload: payload.clone(),
                fetched_at: now,
            };
            self.store.put_cached_enrichment(&entry).await?;
            if data_type == EnrichmentDataType::Contact {
                self.cache_social_links(&entry).await?;
            }
            return Ok(Enriched {
                data: Some(payload),
                source: Source::Provider(name),
                attempts,
            });
        }
        match failure {
            Some((source, retryable)) if !answered => {
                Err(EnricherError::ProvidersFailed { source, retryable })
            }
            _ => Ok(Enriched {
                data: None,
                source: Source::None,
                attempts,
            }),
        }
    }

    /// Releases reservation `id` of a call that cost nothing. A failure is logged, not
    /// returned: the reservation stops counting when it expires anyway.
    async fn release(&self, workspace_id: WorkspaceId, id: SpendReservationId) {
        if let Err(error) = self.store.release_enrichment_spend(workspace_id, id).await {
            tracing::warn!(%workspace_id, %error, "enrichment spend reservation not released; it will expire");
        }
    }

    /// Appends one event per threshold crossed by the settled `totals`. The
    /// idempotency key makes each fire once per workspace and month, even if this runs
    /// twice.
    async fn fire_alerts(
        &self,
        workspace_id: WorkspaceId,
        budget: &BudgetPolicy,
        month: NaiveDate,
        totals: SpendTotals,
        now: DateTime<Utc>,
    ) -> Result<(), EnricherError> {
        for percent in budget.crossed(totals.before, totals.after) {
            self.fire_alert(workspace_id, budget, month, percent, totals.after, now)
                .await?;
        }
        Ok(())
    }

    /// Appends the event of threshold `percent` at settled spend `spent` (once per
    /// workspace, month and threshold, by its idempotency key).
    async fn fire_alert(
        &self,
        workspace_id: WorkspaceId,
        budget: &BudgetPolicy,
        month: NaiveDate,
        percent: u8,
        spent: i64,
        now: DateTime<Utc>,
    ) -> Result<(), EnricherError> {
        let kind = if percent == EXHAUSTED_PERCENT {
            EXHAUSTED_EVENT
        } else {
            ALERT_EVENT
        };
        let payload = json!({
            "month": month_label(month),
            "percent": percent,
            "spent_minor_units": spent,
            "budget_minor_units": budget.monthly.minor_units(),
            "currency": budget.monthly.currency().as_str(),
            "paused": percent == EXHAUSTED_PERCENT && budget.pause_at_limit,
        });
        let event = NewEvent::new(
            workspace_id,
            kind,
            month_label(month),
            payload,
            alert_idempotency_key(month, percent),
            now,
        )?;
        let appended = self.store.append_event(&event).await?;
        if appended.created {
            tracing::info!(%workspace_id, percent, "enrichment budget threshold reached");
        }
        Ok(())
    }
}

/// The credits and money one lookup of `kind` costs at `provider`, in the budget's
/// currency. `CurrencyMismatch` if the provider prices in another currency.
fn price(
    provider: &dyn EnrichmentProvider,
    kind: LookupKind,
    budget: Option<&BudgetPolicy>,
) -> Result<(u32, Money), EnricherError> {
    let cost = provider.cost(kind);
    let money = match (cost.money, budget) {
        (Some(m), Some(b)) if m.currency() != b.monthly.currency() => {
            return Err(EnricherError::CurrencyMismatch {
                provider: provider.name(),
                expected: b.monthly.currency(),
                found: m.currency(),
            });
        }
        (Some(m), _) => m,
        (None, Some(b)) => Money::zero(b.monthly.currency()),
        (None, None) => Money::zero(Currency::new("XXX")?),
    };
    Ok((cost.credits, money))
}
