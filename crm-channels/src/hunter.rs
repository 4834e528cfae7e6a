//! Hunter.io enrichment: email finder and email verifier.
//!
//! - Contact: `GET /email-finder?domain=&first_name=&last_name=` under
//!   `https://api.hunter.io/v2`. It needs a domain (the query's, or the domain of its
//!   email) and a first and last name. `data.email: null` is a miss.
//! - Email verification: `GET /email-verifier?email=`. **HTTP 202 means the check is
//!   still running**: the answer is `EmailStatus::Pending` (ask again later).
//!
//! The key goes in the `X-API-KEY` header, which Hunter accepts as an alternative to the
//! classic `api_key` query parameter; a header keeps it out of URLs. Each lookup is
//! counted as 1 credit (check `GET /account` for the plan's real usage). Hunter sends no
//! rate-limit headers.
//!
//! # Errors
//! Hunter uses its statuses in its own way: **403 means the rate limit was reached**
//! (`RateLimited`, no `Retry-After`) and **429 means the plan's usage limit is
//! exhausted** (`QuotaExhausted`). 401 → `Auth`; 5xx, timeouts → `Retryable`; other
//! 4xx (400 `wrong_params`, 422) → `Permanent`.

use std::fmt;

use async_trait::async_trait;
use crm_core::EmailAddress;
use crm_core::enrichment_provider::{
    ContactData, ContactQuery, EmailStatus, EmailVerification, EnrichmentError, EnrichmentProvider,
    Lookup, LookupCost, LookupKind, RateLimitState,
};
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use http::{Method, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use crate::build::BuildError;
use crate::fields::{text_at, u32_at};
use crate::http::{Auth, ConfigError, HttpConfig, HttpResponse, ProviderClient, send_span};

/// Hunter's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.hunter.io/v2";
const PROVIDER: &str = "hunter";

/// How to reach Hunter.
#[derive(Clone)]
#[non_exhaustive]
pub struct HunterConfig {
    /// API key, by reference.
    pub api_key: SecretRef,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for HunterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HunterConfig")
            .field("api_key", &"[redacted]")
            .field("http", &self.http)
            .finish()
    }
}

impl HunterConfig {
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

/// Hunter as an enrichment provider.
pub struct HunterProvider {
    client: ProviderClient,
    api_key: SecretString,
}

impl fmt::Debug for HunterProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HunterProvider")
            .field("client", &self.client)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

/// Hunter's statuses, classified (403 and 429 differ from the usual meaning).
fn classify(response: &HttpResponse) -> EnrichmentError {
    match response.status {
        StatusCode::FORBIDDEN => EnrichmentError::RateLimited {
            provider: PROVIDER,
            retry_after: response.retry_after(),
        },
        StatusCode::TOO_MANY_REQUESTS => EnrichmentError::QuotaExhausted { provider: PROVIDER },
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => EnrichmentError::Permanent {
            provider: PROVIDER,
            reason: response.error_detail().summary(),
        },
        _ => response.enrichment_error(PROVIDER),
    }
}

/// `data.status` (falling back to the deprecated `data.result`) as a verdict.
/// Disposable addresses count as invalid for outreach.
fn verdict(data: &Value) -> EmailStatus {
    match text_at(data, &["status"]).as_deref() {
        Some("valid") => EmailStatus::Valid,
        Some("invalid" | "disposable") => EmailStatus::Invalid,
        Some("accept_all") => EmailStatus::CatchAll,
        _ => match text_at(data, &["result"]).as_deref() {
            Some("deliverable") => EmailStatus::Valid,
            Some("undeliverable") => EmailStatus::Invalid,
            _ => EmailStatus::Unknown,
        },
    }
}

impl HunterProvider {
    /// A provider for `config`, its API key resolved through `secrets` now (build a new
    /// one to pick up a rotated API key).
    pub async fn connect(
        config: HunterConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A provider for `config` with `api_key`, the value behind `config.api_key` that the
    /// caller resolved itself.
    pub fn new(config: HunterConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            api_key,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<HttpResponse, EnrichmentError> {
        let request = self.client.request(Method::GET, &[path]).query(params);
        let auth = Auth::Header {
            name: "x-api-key",
            value: &self.api_key,
        };
        let response = self
            .client
            .execute_for_enrichment(auth.apply(request))
            .await?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(classify(&response))
        }
    }
}

#[async_trait]
impl EnrichmentProvider for HunterProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn kinds(&self) -> &'static [LookupKind] {
        &[LookupKind::Contact, LookupKind::EmailVerification]
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
        let domain = query
            .domain
            .as_ref()
            .map(|d| d.as_str().to_owned())
            .or_else(|| query.email.as_ref().map(|e| e.domain().to_owned()));
        let (Some(domain), Some(first), Some(last)) = (
            domain,
            query.first_name.as_deref(),
            query.last_name.as_deref(),
        ) else {
            return Err(EnrichmentError::Permanent {
                provider: PROVIDER,
                reason: "the email finder needs a domain and a first and last name".to_owned(),
            });
        };
        let params = [
            ("domain", domain.as_str()),
            ("first_name", first),
            ("last_name", last),
        ];
        let response = self
            .get("email-finder", &params)
            .instrument(tracing::info_span!("provider_call", provider = PROVIDER, operation = "email_finder", domain = %domain))
            .await?;
        let body: Value = response.enrichment_json(PROVIDER)?;
        let data = &body["data"];
        let Some(email) = text_at(data, &["email"]) else {
            return Ok(Lookup::NotFound);
        };
        Ok(Lookup::Found(ContactData {
            first_name: text_at(data, &["first_name"]),
            last_name: text_at(data, &["last_name"]),
            email: Some(email),
            title: text_at(data, &["position"]),
            seniority: None,
            phone: text_at(data, &["phone_number"]),
            linkedin_url: text_at(data, &["linkedin_url"]),
            company_domain: text_at(data, &["domain"]),
            location: None,
        }))
    }

    async fn verify_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Lookup<EmailVerification>, EnrichmentError> {
        let response = self
            .get("email-verifier", &[("email", email.as_str())])
            .instrument(send_span(PROVIDER, "email_verifier", email.as_str()))
            .await?;
        if response.status == StatusCode::ACCEPTED {
            return Ok(Lookup::Found(EmailVerification {
                status: EmailStatus::Pending,
                score: None,
            }));
        }
        let body: Value = response.enrichment_json(PROVIDER)?;
        let data = &body["data"];
        Ok(Lookup::Found(EmailVerification {
            status: verdict(data),
            score: u32_at(data, &["score"]).and_then(|s| u8::try_from(s.min(100)).ok()),
        }))
    }
}
