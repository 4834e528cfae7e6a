//! ZeroBounce email validation.
//!
//! `GET /validate?api_key=<key>&email=<address>` under `https://api.zerobounce.net/v2`.
//! ZeroBounce takes the key only as a query parameter; errors never include URLs, so it
//! does not leak from there.
//!
//! **An error arrives inside an HTTP 200**: `{"error": "Invalid API Key or your account
//! ran out of credits"}` (sometimes with an array value). Such an answer is an error,
//! never a verdict. Because the one message covers two causes, the provider then asks
//! `GET /getcredits?api_key=` once: `"-1"` credits means the key is invalid (`Auth`),
//! `"0"` means the credits are used up (`QuotaExhausted`).
//!
//! Verdicts: `valid` → `Valid`; `invalid`, `spamtrap`, `abuse`, `do_not_mail` →
//! `Invalid`; `catch-all` → `CatchAll`; `unknown` with sub-status `greylisted` →
//! `Pending` (ask again later); other `unknown` → `Unknown`.
//!
//! Each validation costs 1 credit (unknown results are not charged). ZeroBounce sends no
//! rate-limit headers.
//!
//! # Errors
//! 429 → `RateLimited`, waiting the documented one-minute block unless `Retry-After`
//! says otherwise; 403 ("API Shield" blocking, not an auth failure) → `RateLimited`;
//! 401 → `Auth`; 5xx, timeouts → `Retryable`; other 4xx → `Permanent`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use crm_core::EmailAddress;
use crm_core::enrichment_provider::{
    EmailStatus, EmailVerification, EnrichmentError, EnrichmentProvider, Lookup, LookupCost,
    LookupKind, RateLimitState,
};
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use http::{Method, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use crate::build::BuildError;
use crate::fields::text_at;
use crate::http::{
    Auth, ConfigError, ErrorDetail, HttpConfig, HttpResponse, ProviderClient, send_span,
};

/// ZeroBounce's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.zerobounce.net/v2";
/// How long ZeroBounce blocks a key that exceeded its rate.
pub const RATE_LIMIT_BLOCK: Duration = Duration::from_secs(60);
const PROVIDER: &str = "zerobounce";

/// How to reach ZeroBounce.
#[derive(Clone)]
#[non_exhaustive]
pub struct ZeroBounceConfig {
    /// API key, by reference.
    pub api_key: SecretRef,
    /// Base URL (the regional EU/US roots work too) and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for ZeroBounceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZeroBounceConfig")
            .field("api_key", &"[redacted]")
            .field("http", &self.http)
            .finish()
    }
}

impl ZeroBounceConfig {
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

/// ZeroBounce as an email verification provider.
pub struct ZeroBounceProvider {
    client: ProviderClient,
    api_key: SecretString,
}

impl fmt::Debug for ZeroBounceProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZeroBounceProvider")
            .field("client", &self.client)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

fn classify(response: &HttpResponse) -> EnrichmentError {
    match response.status {
        StatusCode::TOO_MANY_REQUESTS => EnrichmentError::RateLimited {
            provider: PROVIDER,
            retry_after: Some(response.retry_after().unwrap_or(RATE_LIMIT_BLOCK)),
        },
        StatusCode::FORBIDDEN => EnrichmentError::RateLimited {
            provider: PROVIDER,
            retry_after: response.retry_after(),
        },
        _ => response.enrichment_error(PROVIDER),
    }
}

fn verdict(body: &Value) -> EmailStatus {
    let status = text_at(body, &["status"]);
    let sub_status = text_at(body, &["sub_status"]);
    match (status.as_deref(), sub_status.as_deref()) {
        (Some("valid"), _) => EmailStatus::Valid,
        (Some("invalid" | "spamtrap" | "abuse" | "do_not_mail"), _) => EmailStatus::Invalid,
        (Some("catch-all"), _) => EmailStatus::CatchAll,
        (Some("unknown"), Some("greylisted")) => EmailStatus::Pending,
        _ => EmailStatus::Unknown,
    }
}

impl ZeroBounceProvider {
    /// A provider for `config`, its API key resolved through `secrets` now (build a new
    /// one to pick up a rotated API key).
    pub async fn connect(
        config: ZeroBounceConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A provider for `config` with `api_key`, the value behind `config.api_key` that the
    /// caller resolved itself.
    pub fn new(config: ZeroBounceConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            api_key,
        })
    }

    /// A GET with the key in the query, returning the JSON of a 2xx answer.
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, EnrichmentError> {
        let auth = Auth::Query {
            name: "api_key",
            value: &self.api_key,
        };
        let request = auth
            .apply(self.client.request(Method::GET, &[path]))
            .query(params);
        let response = self.client.execute_for_enrichment(request).await?;
        if !response.is_success() {
            return Err(classify(&response));
        }
        response.enrichment_json(PROVIDER)
    }

    /// Tells "invalid key" from "out of credits" after a 200 carrying an error.
    async fn explain_error(&self, detail: ErrorDetail) -> EnrichmentError {
        let credits = self
            .get("getcredits", &[])
            .await
            .ok()
            .and_then(|body| text_at(&body, &["Credits"]));
        match credits.as_deref() {
            Some("-1") => EnrichmentError::Auth { provider: PROVIDER },
            Some("0") => EnrichmentError::QuotaExhausted { provider: PROVIDER },
            _ => EnrichmentError::Permanent {
                provider: PROVIDER,
                reason: detail.summary(),
            },
        }
    }

    /// The remaining credits (`GET /getcredits`); `-1` means the key is invalid.
    pub async fn credits(&self) -> Result<i64, EnrichmentError> {
        let body = self.get("getcredits", &[]).await?;
        text_at(&body, &["Credits"])
            .and_then(|c| c.parse().ok())
            .ok_or(EnrichmentError::Permanent {
                provider: PROVIDER,
                reason: "getcredits answered without a number".to_owned(),
            })
    }
}

#[async_trait]
impl EnrichmentProvider for ZeroBounceProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn kinds(&self) -> &'static [LookupKind] {
        &[LookupKind::EmailVerification]
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

    async fn verify_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Lookup<EmailVerification>, EnrichmentError> {
        let span = send_span(PROVIDER, "validate", email.as_str());
        async {
            let body = self.get("validate", &[("email", email.as_str())]).await?;
            if body.get("error").is_some_and(|e| !e.is_null()) {
                let detail = ErrorDetail::from_body(body.to_string().as_bytes());
                return Err(self.explain_error(detail).await);
            }
            Ok(Lookup::Found(EmailVerification {
                status: verdict(&body),
                score: None,
            }))
        }
        .instrument(span)
        .await
    }
}
