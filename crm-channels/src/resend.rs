//! Email through Resend: `POST /emails` with bearer auth and an `Idempotency-Key`.
//!
//! Built from a workspace's [`ChannelConfig`] (provider `resend`): secret `api_key`,
//! params `from` (required) and `base_url`; see [`ResendConfig::from_channel_config`].
//!
//! The request is `{"from", "to": [recipient], "subject", "text"}`, plus from
//! [`OutboundMessage::metadata`]:
//!
//! | Field | Type | Sent as |
//! |---|---|---|
//! | `html` | string | `html` (the body stays as `text`) |
//! | `reply_to` | string | `reply_to` |
//! | `tags` | object of strings | `tags: [{name, value}]` |
//!
//! `Idempotency-Key` is [`OutboundMessage::idempotency_key`] (the outbox id), so a retried
//! send within Resend's 24-hour window returns the first email's id and sends nothing.
//!
//! # Errors
//! | Answer | Error |
//! |---|---|
//! | recipient not an email address, no subject (before any request) | `InvalidRecipient`, `Permanent` |
//! | 401, 403 (`missing_api_key`, `restricted_api_key`, `invalid_api_key`) | `Auth` |
//! | 403 `validation_error` (e.g. unverified domain) | `Permanent` |
//! | 409 `concurrent_idempotent_requests` (first send still in flight) | `Retryable` |
//! | 409 `invalid_idempotent_request` (same key, other payload) | `Permanent` |
//! | 422 about the `` `to` `` field | `InvalidRecipient` |
//! | other 400, 404, 422, 451 | `Permanent` |
//! | 429 (`rate_limit_exceeded`, daily/monthly quota) | `RateLimited`, `retry_after` from `retry-after` or `ratelimit-reset` |
//! | 5xx, timeout, connection failure | `Retryable` |

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use crm_core::enrichment_provider::RateLimitState;
use crm_core::model::Channel;
use crm_core::model::ChannelConfig;
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use crm_core::{
    ChannelAdapter, ChannelError, Clock, EmailAddress, OutboundMessage, SendReceipt, SystemClock,
};
use http::Method;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::build::{BuildError, http_config, param, secret_ref};
use crate::http::{Auth, ConfigError, HttpConfig, HttpResponse, ProviderClient, send_span};
use crate::window::metadata_str;

/// Resend's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.resend.com";
const PROVIDER: &str = "resend";

/// How to reach Resend. Holds the API key as a reference; [`ResendChannel::connect`]
/// resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResendConfig {
    /// API key (`re_...`), by reference.
    pub api_key: SecretRef,
    /// Sender, e.g. `"Sales <sales@example.com>"`, on a domain verified with Resend.
    pub from: String,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl ResendConfig {
    /// A config for the public API.
    pub fn new(api_key: SecretRef, from: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key,
            from: from.into(),
            http: HttpConfig::new(DEFAULT_BASE_URL)?,
        })
    }

    /// Reads a workspace's channel configuration: secret `api_key`, params `from`
    /// (required) and `base_url` (default [`DEFAULT_BASE_URL`]).
    pub fn from_channel_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key: secret_ref(config, "api_key")?,
            from: param(config, "from")?.to_owned(),
            http: http_config(config, DEFAULT_BASE_URL)?,
        })
    }

    /// Uses `http` (another base URL, other timeouts).
    #[must_use]
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }
}

/// Sends email through Resend.
pub struct ResendChannel {
    client: ProviderClient,
    api_key: SecretString,
    from: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ResendChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResendChannel")
            .field("client", &self.client)
            .field("api_key", &"[redacted]")
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Serialize)]
struct Tag<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct SendEmailRequest<'a> {
    from: &'a str,
    to: [&'a str; 1],
    subject: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Tag<'a>>,
}

#[derive(Deserialize)]
struct SendEmailResponse {
    id: String,
}

impl ResendChannel {
    /// A channel sending through `config`, its API key resolved through `secrets`
    /// now (resolve again, by building a new channel, to pick up a rotated key).
    pub async fn connect(
        config: ResendConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A channel sending through `config` with `api_key`, the value behind
    /// `config.api_key` that the caller resolved itself.
    pub fn new(config: ResendConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        if config.from.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "from",
                reason: "must not be empty",
            });
        }
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            api_key,
            from: config.from,
            clock: Arc::new(SystemClock),
        })
    }

    /// Times receipts by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client = self.client.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// Resend's rate-limit state from the last answer (`ratelimit-*` headers).
    #[must_use]
    pub fn rate_limit(&self) -> RateLimitState {
        self.client.rate_limit()
    }

    fn request_body<'m>(
        &'m self,
        to: &'m str,
        message: &'m OutboundMessage,
    ) -> Result<SendEmailRequest<'m>, ChannelError> {
        let subject = message
            .subject
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or(ChannelError::Permanent {
                provider: PROVIDER,
                reason: "an email needs a subject".to_owned(),
            })?;
        let tags = message
            .metadata
            .get("tags")
            .and_then(serde_json::Value::as_object)
            .map(|tags| {
                tags.iter()
                    .filter_map(|(name, value)| {
                        Some(Tag {
                            name,
                            value: value.as_str()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SendEmailRequest {
            from: &self.from,
            to: [to],
            subject,
            text: &message.body,
            html: metadata_str(message, "html"),
            reply_to: metadata_str(message, "reply_to"),
            tags,
        })
    }
}

/// Resend's answer to a failed send, classified.
fn classify(response: &HttpResponse) -> ChannelError {
    let detail = response.error_detail();
    let about_to_field = detail
        .message
        .as_deref()
        .is_some_and(|m| m.contains("`to`"));
    match (response.status.as_u16(), detail.code.as_deref()) {
        (403, Some("validation_error")) => ChannelError::Permanent {
            provider: PROVIDER,
            reason: detail.summary(),
        },
        (409, Some("concurrent_idempotent_requests")) => ChannelError::Retryable {
            provider: PROVIDER,
            reason: detail.summary(),
            retry_after: response.retry_after(),
            source: None,
        },
        (400 | 422, _) if about_to_field => ChannelError::InvalidRecipient {
            provider: PROVIDER,
            reason: detail.summary(),
        },
        _ => response.channel_error_with(PROVIDER, &detail),
    }
}

#[async_trait]
impl ChannelAdapter for ResendChannel {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let span = send_span(PROVIDER, "send_email", &message.recipient);
        async {
            let to = EmailAddress::parse(&message.recipient).map_err(|e| {
                ChannelError::InvalidRecipient {
                    provider: PROVIDER,
                    reason: e.to_string(),
                }
            })?;
            let body = self.request_body(to.as_str(), message)?;
            let request = self
                .client
                .request(Method::POST, &["emails"])
                .header("Idempotency-Key", message.idempotency_key())
                .json(&body);
            let response = self
                .client
                .execute_for_channel(Auth::Bearer(&self.api_key).apply(request))
                .await?;
            if !response.is_success() {
                return Err(classify(&response));
            }
            let id = response.json::<SendEmailResponse>().ok().map(|r| r.id);
            if id.is_none() {
                tracing::warn!(
                    provider = PROVIDER,
                    "accepted, but the answer had no email id"
                );
            }
            Ok(SendReceipt {
                provider_message_id: id,
                accepted_at: self.clock.now(),
            })
        }
        .instrument(span)
        .await
    }
}
