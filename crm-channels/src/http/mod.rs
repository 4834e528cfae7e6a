//! The small HTTP layer every provider client shares.
//!
//! - [`HttpConfig`]: base URL (so tests point a client at loopback) and timeouts.
//! - [`ProviderClient`]: a `reqwest` client with rustls, no redirects, a response size
//!   cap, tracing, and rate-limit header tracking; [`Auth`] applies credentials.
//! - [`map_reqwest_error`]: the one place a `reqwest::Error` is classified (walking its
//!   sources) and stripped of its URL, which may carry query-string credentials.
//! - [`parse_retry_after`], [`parse_rate_limit`]: `Retry-After` and `ratelimit-*` /
//!   `x-ratelimit-*` headers.
//! - [`classify_status`], [`classify_enrichment_status`]: HTTP status to the core error
//!   kinds; [`ErrorDetail`] reads the JSON error bodies providers send.
//! - [`redact_address`] and [`redact`]: what goes into tracing fields instead of an
//!   email address or phone number.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::http::{HeaderMap, HeaderValue, Method, StatusCode};
use chrono::{DateTime, Utc};
use crm_core::enrichment_provider::{EnrichmentError, RateLimitState};
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{ChannelError, Clock, SystemClock};
use serde::de::DeserializeOwned;
use url::Url;

mod classify;
mod headers;

pub use crate::webhooks::redact::redact;
pub use classify::{
    ErrorDetail, TransportError, TransportErrorKind, classify_enrichment_status, classify_status,
    map_reqwest_error,
};
pub use headers::{
    RateLimitHeaders, parse_rate_limit, parse_rate_limit_with, parse_retry_after, retry_after_from,
};

/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused (provider answers are small JSON documents).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where a client sends its requests and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The provider's API root, e.g. `https://api.resend.com`. Paths are appended to it.
    pub base_url: Url,
    /// Whole-request timeout (connect, send, read the answer).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl HttpConfig {
    /// A config for `base_url` with the default timeouts.
    ///
    /// The URL must be `http` or `https` and must not carry a user name, password,
    /// query or fragment: credentials are passed separately so that they never end up
    /// in a URL that could be logged.
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(base_url).map_err(|source| ConfigError::BaseUrl {
            reason: "not a valid URL",
            source: Some(source),
        })?;
        let bad = |reason| ConfigError::BaseUrl {
            reason,
            source: None,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not contain a query or fragment"));
        }
        Ok(Self {
            base_url: url,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Sets the whole-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// A client could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is unusable.
    #[error("invalid base URL: {reason}")]
    BaseUrl {
        /// What is wrong with it.
        reason: &'static str,
        /// The parse error, if parsing failed.
        #[source]
        source: Option<url::ParseError>,
    },
    /// A required parameter or secret is absent from a channel configuration.
    #[error("{field} is required")]
    Missing {
        /// The parameter's or secret's name.
        field: &'static str,
    },
    /// A setting other than the URL is unusable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client (TLS backend) could not be built.
    #[error("could not build the HTTP client")]
    Client {
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
}

/// A provider's answer, read in full. Its `Debug` shows the status and body size only
/// (the body may carry personal data).
#[derive(Clone)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body bytes (at most [`MAX_RESPONSE_BYTES`]).
    pub body: Vec<u8>,
    /// When the answer arrived, by the server's `Date` header when it sent one (so that
    /// an HTTP-date `Retry-After` is measured on the server's clock).
    pub received_at: DateTime<Utc>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .field("received_at", &self.received_at)
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as JSON, or a permanent channel error naming what was unreadable.
    pub fn channel_json<T: DeserializeOwned>(
        &self,
        provider: &'static str,
    ) -> Result<T, ChannelError> {
        self.json().map_err(|e| ChannelError::Permanent {
            provider,
            reason: format!("unreadable answer: {e}"),
        })
    }

    /// The body as JSON, or a permanent enrichment error naming what was unreadable.
    pub fn enrichment_json<T: DeserializeOwned>(
        &self,
        provider: &'static str,
    ) -> Result<T, EnrichmentError> {
        self.json().map_err(|e| EnrichmentError::Permanent {
            provider,
            reason: format!("unreadable answer: {e}"),
        })
    }

    /// The wait the provider asked for (see [`retry_after_from`]).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after_from(&self.headers, self.received_at)
    }

    /// The error body, parsed.
    #[must_use]
    pub fn error_detail(&self) -> ErrorDetail {
        ErrorDetail::from_body(&self.body)
    }

    /// The generic channel error for this (non-2xx) answer: [`classify_status`] with the
    /// provider's error code and message in the reason.
    #[must_use]
    pub fn channel_error(&self, provider: &'static str) -> ChannelError {
        self.channel_error_with(provider, &self.error_detail())
    }

    /// Like [`HttpResponse::channel_error`] with an already parsed detail.
    #[must_use]
    pub fn channel_error_with(&self, provider: &'static str, detail: &ErrorDetail) -> ChannelError {
        let summary = detail.summary();
        let reason = if summary.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {summary}", self.status)
        };
        classify::classify_with_reason(provider, self.status, self.retry_after(), reason)
    }

    /// The generic enrichment error for this (non-2xx) answer.
    #[must_use]
    pub fn enrichment_error(&self, provider: &'static str) -> EnrichmentError {
        classify_enrichment_status(provider, self.status, self.retry_after())
    }
}

/// Where a request's credentials go.
pub enum Auth<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a SecretString),
    /// HTTP Basic.
    Basic {
        /// User name (an account id, or the API key itself for Clearbit).
        user: &'a str,
        /// Password, if any.
        password: Option<&'a SecretString>,
    },
    /// A custom header such as `x-api-key`.
    Header {
        /// Header name.
        name: &'static str,
        /// Its value.
        value: &'a SecretString,
    },
    /// A query parameter, for providers that only accept that (ZeroBounce, the Graph
    /// API's `access_token`). Errors strip URLs, so the value does not leak from there.
    Query {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: &'a SecretString,
    },
}

impl fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Bearer(_) => "Bearer",
            Self::Basic { .. } => "Basic",
            Self::Header { .. } => "Header",
            Self::Query { .. } => "Query",
        };
        write!(f, "Auth::{kind}([redacted])")
    }
}

impl Auth<'_> {
    /// Adds the credentials to `request`. Header values are marked sensitive.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Self::Basic { user, password } => {
                request.basic_auth(user, password.map(|p| p.expose_secret().to_owned()))
            }
            Self::Header { name, value } => match HeaderValue::from_str(value.expose_secret()) {
                Ok(mut header) => {
                    header.set_sensitive(true);
                    request.header(*name, header)
                }
                // reqwest turns the invalid value into a builder error that does not
                // echo the value.
                Err(_) => request.header(*name, value.expose_secret()),
            },
            Self::Query { name, value } => request.query(&[(*name, value.expose_secret())]),
        }
    }
}

/// A provider's HTTP client: one `reqwest::Client` (rustls, no redirects, timeouts from
/// [`HttpConfig`]) plus the provider's base URL and its last rate-limit state.
pub struct ProviderClient {
    provider: &'static str,
    client: reqwest::Client,
    base_url: Url,
    rate_limit_headers: RateLimitHeaders,
    last_rate_limit: Mutex<RateLimitState>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderClient")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// A client for `provider` configured by `config`.
    pub fn new(provider: &'static str, config: &HttpConfig) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crm-channels/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConfigError::Client { source })?;
        Ok(Self {
            provider,
            client,
            base_url: config.base_url.clone(),
            rate_limit_headers: RateLimitHeaders::IETF,
            last_rate_limit: Mutex::new(RateLimitState::default()),
            clock: Arc::new(SystemClock),
        })
    }

    /// Dates answers without a `Date` header by `clock` (the system clock by default),
    /// for the rate-limit state's reset time.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads the rate-limit state from these headers instead of the IETF ones.
    #[must_use]
    pub fn with_rate_limit_headers(mut self, headers: RateLimitHeaders) -> Self {
        self.rate_limit_headers = headers;
        self
    }

    /// The provider name.
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The base URL with `segments` appended, each percent-encoded (so an id can never
    /// add path segments or a query).
    #[must_use]
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to [`ProviderClient::endpoint`]`(segments)`.
    pub fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.client.request(method, self.endpoint(segments))
    }

    /// The rate-limit state from the most recent response that carried one.
    #[must_use]
    pub fn rate_limit(&self) -> RateLimitState {
        self.last_rate_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// [`ProviderClient::execute`] for a channel adapter: a transport failure becomes a
    /// [`ChannelError`]; an answer of any status is returned.
    pub async fn execute_for_channel(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<HttpResponse, ChannelError> {
        self.execute(request)
            .await
            .map_err(TransportError::into_channel_error)
    }

    /// [`ProviderClient::execute`] for an enrichment provider.
    pub async fn execute_for_enrichment(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<HttpResponse, EnrichmentError> {
        self.execute(request)
            .await
            .map_err(TransportError::into_enrichment_error)
    }

    /// Sends `request` and reads the whole answer (any status).
    pub async fn execute(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<HttpResponse, TransportError> {
        // Request latency for the log: elapsed real time, not a time of day.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let mut response = request
            .send()
            .await
            .map_err(|e| map_reqwest_error(self.provider, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| map_reqwest_error(self.provider, e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::too_large(self.provider));
            }
            body.extend_from_slice(&chunk);
        }
        let received_at = headers
            .get(::http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map_or_else(|| self.clock.now(), |d| d.with_timezone(&Utc));
        if let Some(state) = parse_rate_limit_with(&headers, &self.rate_limit_headers, received_at)
        {
            *self
                .last_rate_limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = state;
        }
        tracing::debug!(
            provider = self.provider,
            status = status.as_u16(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "provider answered"
        );
        Ok(HttpResponse {
            status,
            headers,
            body,
            received_at,
        })
    }
}

/// An address as it may appear in a tracing field: `***@example.com` for an email,
/// `+***78` for a phone number (also `whatsapp:+...`), `[redacted]` for anything else.
#[must_use]
pub fn redact_address(address: &str) -> String {
    let address = address.trim();
    if let Some((_, domain)) = address.rsplit_once('@') {
        return format!("***@{domain}");
    }
    let number = address.strip_prefix("whatsapp:").unwrap_or(address);
    if let Some(digits) = number.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        let tail = &digits[digits.len().saturating_sub(2)..];
        return format!("+***{tail}");
    }
    "[redacted]".to_owned()
}

/// The tracing span of one provider call. Only the redacted recipient is recorded.
#[must_use]
pub fn send_span(
    provider: &'static str,
    operation: &'static str,
    recipient: &str,
) -> tracing::Span {
    tracing::info_span!(
        "provider_call",
        provider,
        operation,
        recipient = %redact_address(recipient)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_redacted_for_tracing() {
        assert_eq!(redact_address("ada@example.com"), "***@example.com");
        assert_eq!(redact_address("whatsapp:+4915112345678"), "+***78");
        assert_eq!(redact_address("+4915112345678"), "+***78");
        assert_eq!(redact_address("17841400000000000"), "[redacted]");
    }

    #[test]
    fn base_urls_with_credentials_are_refused() {
        assert!(HttpConfig::new("https://user:pw@api.example.com").is_err());
        assert!(HttpConfig::new("https://api.example.com/?key=1").is_err());
        assert!(HttpConfig::new("ftp://api.example.com").is_err());
        assert!(HttpConfig::new("http://127.0.0.1:1234/v2").is_ok());
    }

    #[test]
    fn endpoints_encode_segments() {
        let config = HttpConfig::new("https://api.example.com/v2/").unwrap();
        let client = ProviderClient::new("p", &config).unwrap();
        assert_eq!(
            client
                .endpoint(&["Accounts", "AC1/../x?y", "Messages.json"])
                .as_str(),
            "https://api.example.com/v2/Accounts/AC1%2F..%2Fx%3Fy/Messages.json"
        );
    }

    #[test]
    fn auth_debug_hides_the_secret() {
        let key = SecretString::from("re_live_123".to_owned());
        assert!(!format!("{:?}", Auth::Bearer(&key)).contains("re_live"));
    }
}
