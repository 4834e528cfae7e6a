//! Apollo.io enrichment: people match and organization enrich.
//!
//! - Contact: `POST /people/match` under `https://api.apollo.io/api/v1`, identifiers in
//!   the query string (`email`, `first_name`, `last_name`, `domain`). A 200 without a
//!   `person` is a miss.
//! - Company: `GET /organizations/enrich?domain=`. A 200 without an `organization` is a
//!   miss.
//!
//! Auth is the `x-api-key` header. Phone reveal and waterfalls are not requested, so a
//! people match costs at most 1 credit (0 when nothing is found); organization enrich is
//! counted as 1 credit. Rate-limit state comes from Apollo's per-minute headers
//! (`x-rate-limit-minute`, `x-minute-requests-left`).
//!
//! # Errors
//! 401 (plain-text body) and 403 (endpoint needs a master key) → `Auth`; 429 →
//! `RateLimited` with `retry-after`; 5xx, timeouts → `Retryable`; other 4xx → `Permanent`.

use std::fmt;

use async_trait::async_trait;
use crm_core::Domain;
use crm_core::enrichment_provider::{
    CompanyData, ContactData, ContactQuery, EnrichmentError, EnrichmentProvider, Lookup,
    LookupCost, LookupKind, RateLimitState,
};
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use http::Method;
use serde_json::Value;
use tracing::Instrument;

use crate::build::BuildError;
use crate::fields::{join_present, text_at, u32_at, usd_at};
use crate::http::{Auth, ConfigError, HttpConfig, ProviderClient, RateLimitHeaders, send_span};

/// Apollo's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.apollo.io/api/v1";
/// Apollo's per-minute rate-limit headers.
pub const RATE_LIMIT_HEADERS: RateLimitHeaders = RateLimitHeaders {
    limit: &["x-rate-limit-minute"],
    remaining: &["x-minute-requests-left"],
    reset: &[],
};
const PROVIDER: &str = "apollo";

/// How to reach Apollo.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApolloConfig {
    /// API key, by reference.
    pub api_key: SecretRef,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for ApolloConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApolloConfig")
            .field("api_key", &"[redacted]")
            .field("http", &self.http)
            .finish()
    }
}

impl ApolloConfig {
    /// A config for the public API.
    pub fn new(api_key: SecretRef) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key,
            http: HttpConfig::new(DEFAULT_BASE_URL)?,
        })
    }

    /// Uses `http` (another base URL, other timeouts).
    #[must_use]
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }
}

/// Apollo as an enrichment provider.
pub struct ApolloProvider {
    client: ProviderClient,
    api_key: SecretString,
}

impl fmt::Debug for ApolloProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApolloProvider")
            .field("client", &self.client)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

fn contact_from(person: &Value) -> ContactData {
    ContactData {
        first_name: text_at(person, &["first_name"]),
        last_name: text_at(person, &["last_name"]),
        email: text_at(person, &["email"]),
        title: text_at(person, &["title"]),
        seniority: text_at(person, &["seniority"]),
        phone: None,
        linkedin_url: text_at(person, &["linkedin_url"]),
        company_domain: text_at(person, &["organization", "primary_domain"]),
        location: join_present(&[
            text_at(person, &["city"]),
            text_at(person, &["state"]),
            text_at(person, &["country"]),
        ]),
    }
}

fn company_from(organization: &Value) -> CompanyData {
    CompanyData {
        name: text_at(organization, &["name"]),
        domain: text_at(organization, &["primary_domain"]),
        industry: text_at(organization, &["industry"]),
        employee_count: u32_at(organization, &["estimated_num_employees"]),
        annual_revenue: usd_at(organization, &["annual_revenue"]),
        country: text_at(organization, &["country"]),
        linkedin_url: text_at(organization, &["linkedin_url"]),
    }
}

impl ApolloProvider {
    /// A provider for `config`, its API key resolved through `secrets` now (build a new
    /// one to pick up a rotated API key).
    pub async fn connect(
        config: ApolloConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A provider for `config` with `api_key`, the value behind `config.api_key` that the
    /// caller resolved itself.
    pub fn new(config: ApolloConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?
                .with_rate_limit_headers(RATE_LIMIT_HEADERS),
            api_key,
        })
    }

    /// Sends `request` and returns the object under `key`, or `None` for a miss.
    async fn fetch(
        &self,
        request: reqwest::RequestBuilder,
        key: &str,
    ) -> Result<Option<Value>, EnrichmentError> {
        let auth = Auth::Header {
            name: "x-api-key",
            value: &self.api_key,
        };
        let response = self
            .client
            .execute_for_enrichment(auth.apply(request))
            .await?;
        if !response.is_success() {
            return Err(response.enrichment_error(PROVIDER));
        }
        let mut body: Value = response.enrichment_json(PROVIDER)?;
        Ok(Some(body[key].take()).filter(Value::is_object))
    }
}

#[async_trait]
impl EnrichmentProvider for ApolloProvider {
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

    fn rate_limit(&self) -> RateLimitState {
        self.client.rate_limit()
    }

    async fn enrich_contact(
        &self,
        query: &ContactQuery,
    ) -> Result<Lookup<ContactData>, EnrichmentError> {
        let named = query.first_name.is_some() && query.last_name.is_some();
        if query.email.is_none() && !(named && query.domain.is_some()) {
            return Err(EnrichmentError::Permanent {
                provider: PROVIDER,
                reason: "people match needs an email, or a name and a domain".to_owned(),
            });
        }
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(email) = &query.email {
            params.push(("email", email.as_str()));
        }
        if let Some(first) = &query.first_name {
            params.push(("first_name", first));
        }
        if let Some(last) = &query.last_name {
            params.push(("last_name", last));
        }
        if let Some(domain) = &query.domain {
            params.push(("domain", domain.as_str()));
        }
        let subject = query.email.as_ref().map_or("", |e| e.as_str());
        let request = self
            .client
            .request(Method::POST, &["people", "match"])
            .query(&params);
        let person = self
            .fetch(request, "person")
            .instrument(send_span(PROVIDER, "people_match", subject))
            .await?;
        Ok(person.map_or(Lookup::NotFound, |p| Lookup::Found(contact_from(&p))))
    }

    async fn enrich_company(
        &self,
        domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        let request = self
            .client
            .request(Method::GET, &["organizations", "enrich"])
            .query(&[("domain", domain.as_str())]);
        let organization = self
            .fetch(request, "organization")
            .instrument(tracing::info_span!(
                "provider_call",
                provider = PROVIDER,
                operation = "organization_enrich",
                domain = domain.as_str()
            ))
            .await?;
        Ok(organization.map_or(Lookup::NotFound, |o| Lookup::Found(company_from(&o))))
    }
}
