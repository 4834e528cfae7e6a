//! Clearbit enrichment, **for existing (legacy) keys only**.
//!
//! HubSpot acquired Clearbit in 2023 and sells it as Breeze Intelligence; no new API
//! keys have been issued since. This provider is for accounts that still hold one.
//!
//! - Contact: `GET https://person.clearbit.com/v2/combined/find?email=` → `{person,
//!   company}`; a `null` person or a 404 is a miss.
//! - Company: `GET https://company.clearbit.com/v2/companies/find?domain=`; 404 is a miss.
//!
//! Auth is `Authorization: Bearer <key>`. **An uncached lookup answers 202**: Clearbit
//! is still collecting the data. That is reported as `EnrichmentError::Retryable` (ask
//! again later), not as a miss. Requests answered 200, 201, 202 and 404 are billed, so
//! each lookup costs 1 credit.
//!
//! # Errors
//! 401/403 → `Auth`; 402 → `QuotaExhausted`; 429 → `RateLimited` (`Retry-After`);
//! 5xx, timeouts → `Retryable`; other 4xx (422 invalid email) → `Permanent`.

use std::fmt;

use async_trait::async_trait;
use crm_core::Domain;
use crm_core::enrichment_provider::{
    CompanyData, ContactData, ContactQuery, EnrichmentError, EnrichmentProvider, Lookup,
    LookupCost, LookupKind, RateLimitState,
};
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use http::{Method, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use crate::build::BuildError;
use crate::fields::{at, text_at, u32_at, usd_at};
use crate::http::{Auth, ConfigError, HttpConfig, ProviderClient, send_span};

/// The person API root.
pub const DEFAULT_PERSON_BASE_URL: &str = "https://person.clearbit.com/v2";
/// The company API root.
pub const DEFAULT_COMPANY_BASE_URL: &str = "https://company.clearbit.com/v2";
const PROVIDER: &str = "clearbit";

/// How to reach Clearbit.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClearbitConfig {
    /// A legacy Clearbit secret key, by reference.
    pub api_key: SecretRef,
    /// The person API (base URL and timeouts).
    pub person_http: HttpConfig,
    /// The company API (base URL and timeouts).
    pub company_http: HttpConfig,
}

impl fmt::Debug for ClearbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClearbitConfig")
            .field("api_key", &"[redacted]")
            .field("person_http", &self.person_http)
            .field("company_http", &self.company_http)
            .finish()
    }
}

impl ClearbitConfig {
    /// A config for the public APIs.
    pub fn new(api_key: SecretRef) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key,
            person_http: HttpConfig::new(DEFAULT_PERSON_BASE_URL)?,
            company_http: HttpConfig::new(DEFAULT_COMPANY_BASE_URL)?,
        })
    }

    /// Uses `person` and `company` (other base URLs, other timeouts).
    #[must_use]
    pub fn with_http(mut self, person: HttpConfig, company: HttpConfig) -> Self {
        self.person_http = person;
        self.company_http = company;
        self
    }
}

/// Clearbit as an enrichment provider.
pub struct ClearbitProvider {
    person: ProviderClient,
    company: ProviderClient,
    api_key: SecretString,
}

impl fmt::Debug for ClearbitProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClearbitProvider")
            .field("person", &self.person)
            .field("company", &self.company)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

/// `in/ada` or `company/acme` as a full LinkedIn URL.
fn linkedin(value: &Value) -> Option<String> {
    text_at(value, &["linkedin", "handle"]).map(|h| format!("https://www.linkedin.com/{h}"))
}

fn contact_from(person: &Value) -> ContactData {
    ContactData {
        first_name: text_at(person, &["name", "givenName"]),
        last_name: text_at(person, &["name", "familyName"]),
        email: text_at(person, &["email"]),
        title: text_at(person, &["employment", "title"]),
        seniority: text_at(person, &["employment", "seniority"]),
        phone: None,
        linkedin_url: linkedin(person),
        company_domain: text_at(person, &["employment", "domain"]),
        location: text_at(person, &["location"]),
    }
}

fn company_from(company: &Value) -> CompanyData {
    CompanyData {
        name: text_at(company, &["name"]),
        domain: text_at(company, &["domain"]),
        industry: text_at(company, &["category", "industry"]),
        employee_count: u32_at(company, &["metrics", "employees"]),
        annual_revenue: usd_at(company, &["metrics", "annualRevenue"]),
        country: text_at(company, &["geo", "country"]),
        linkedin_url: linkedin(company),
    }
}

impl ClearbitProvider {
    /// A provider for `config`, its API key resolved through `secrets` now (build a new
    /// one to pick up a rotated API key).
    pub async fn connect(
        config: ClearbitConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A provider for `config` with `api_key`, the value behind `config.api_key` that the
    /// caller resolved itself.
    pub fn new(config: ClearbitConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            person: ProviderClient::new(PROVIDER, &config.person_http)?,
            company: ProviderClient::new(PROVIDER, &config.company_http)?,
            api_key,
        })
    }

    /// Sends a lookup; `None` is a miss (404).
    async fn lookup(
        &self,
        client: &ProviderClient,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<Value>, EnrichmentError> {
        let response = client
            .execute_for_enrichment(Auth::Bearer(&self.api_key).apply(request))
            .await?;
        match response.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::ACCEPTED => Err(EnrichmentError::Retryable {
                provider: PROVIDER,
                reason: "lookup queued (202); ask again later".to_owned(),
                source: None,
            }),
            s if s.is_success() => response.enrichment_json(PROVIDER).map(Some),
            _ => Err(response.enrichment_error(PROVIDER)),
        }
    }
}

#[async_trait]
impl EnrichmentProvider for ClearbitProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn kinds(&self) -> &'static [LookupKind] {
        &[LookupKind::Contact, LookupKind::Company]
    }

    fn cost(&self, _kind: LookupKind) -> LookupCost {
        LookupCost {
            credits: 1,
            money: None,
        }
    }

    /// The state from whichever API answered last with rate-limit headers.
    fn rate_limit(&self) -> RateLimitState {
        let person = self.person.rate_limit();
        if person == RateLimitState::default() {
            self.company.rate_limit()
        } else {
            person
        }
    }

    async fn enrich_contact(
        &self,
        query: &ContactQuery,
    ) -> Result<Lookup<ContactData>, EnrichmentError> {
        let Some(email) = &query.email else {
            return Err(EnrichmentError::Permanent {
                provider: PROVIDER,
                reason: "the person lookup needs an email".to_owned(),
            });
        };
        let request = self
            .person
            .request(Method::GET, &["combined", "find"])
            .query(&[("email", email.as_str())]);
        let body = self
            .lookup(&self.person, request)
            .instrument(send_span(PROVIDER, "combined_find", email.as_str()))
            .await?;
        let person = body.as_ref().and_then(|b| at(b, &["person"]));
        Ok(person.map_or(Lookup::NotFound, |p| {
            let mut contact = contact_from(p);
            if contact.company_domain.is_none() {
                contact.company_domain = body
                    .as_ref()
                    .and_then(|b| text_at(b, &["company", "domain"]));
            }
            Lookup::Found(contact)
        }))
    }

    async fn enrich_company(
        &self,
        domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        let request = self
            .company
            .request(Method::GET, &["companies", "find"])
            .query(&[("domain", domain.as_str())]);
        let body = self
            .lookup(&self.company, request)
            .instrument(tracing::info_span!(
                "provider_call",
                provider = PROVIDER,
                operation = "companies_find",
                domain = domain.as_str()
            ))
            .await?;
        Ok(body.map_or(Lookup::NotFound, |c| Lookup::Found(company_from(&c))))
    }
}
