//! Instagram direct messages through Meta's Graph API.
//!
//! Built from a workspace's [`ChannelConfig`] (provider `instagram`): secret
//! `access_token`, params `page_id` or `ig_user_id`, `api_version` and `base_url`; see
//! [`InstagramConfig::from_channel_config`].
//!
//! Two documented routes, chosen by [`InstagramEndpoint`]:
//! - Messenger Platform with a Facebook Page linked to the Instagram professional account:
//!   `POST https://graph.facebook.com/<version>/me/messages?access_token=<page token>`
//!   (or `/<page id>/messages`). The token travels in the query string as documented;
//!   errors never include URLs, so it does not leak from there.
//! - Instagram API with Instagram Login: `POST https://graph.instagram.com/<version>/<ig
//!   user id>/messages` with `Authorization: Bearer <token>`.
//!
//! Both take the JSON body `{"recipient": {"id": "<IGSID>"}, "message": {"text": "..."}}`
//! and answer `{"recipient_id", "message_id"}`.
//!
//! # Before any request
//! - The recipient must be an Instagram-scoped id (IGSID, digits), taken from an inbound
//!   webhook; a username does not work → `InvalidRecipient`.
//! - The text must be at most 1000 bytes of UTF-8 → `Permanent`.
//! - Messaging is user-initiated, with a 24-hour window after the person's last message
//!   (`metadata.last_inbound_at`, see [`crate::window`]). With `metadata.human_agent:
//!   true` a person (not automation) may reply up to 7 days after it; the message then
//!   carries the `HUMAN_AGENT` tag. Outside those windows → `Permanent`.
//!
//! # Errors
//! | Answer | Error |
//! |---|---|
//! | Graph error code 190 (token), 10 or 200 (permission), HTTP 401/403 | `Auth` |
//! | Graph error code 4, 17, 32, 613 (throttling), HTTP 429 | `RateLimited` |
//! | Graph error code 551, or 100 with subcode 2018001 (no such user) | `InvalidRecipient` |
//! | other 4xx | `Permanent` |
//! | 5xx, timeout, connection failure | `Retryable` |
//!
//! The Graph API takes no idempotency key for messages, so none is sent.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use crm_core::model::Channel;
use crm_core::model::ChannelConfig;
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use crm_core::{ChannelAdapter, ChannelError, Clock, OutboundMessage, SendReceipt, SystemClock};
use http::Method;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::build::{BuildError, http_config, optional_param, secret_ref};
use crate::http::{Auth, ConfigError, HttpConfig, HttpResponse, ProviderClient, send_span};
use crate::window::{CUSTOMER_SERVICE_WINDOW, WindowCheck, last_inbound_at};

/// The Graph API root for the Messenger Platform route.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Graph API root for the Instagram Login route.
pub const INSTAGRAM_LOGIN_BASE_URL: &str = "https://graph.instagram.com";
/// The Graph API version used unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = "v23.0";
/// The longest text Instagram accepts, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 1000;
/// How long after the person's last message a human agent may still reply.
pub const HUMAN_AGENT_WINDOW: Duration = Duration::days(7);
const PROVIDER: &str = "instagram";

/// Which documented route messages take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstagramEndpoint {
    /// Messenger Platform: `/<version>/me/messages` (or `/<page id>/messages`) with a
    /// Page access token in the `access_token` query parameter.
    Page {
        /// The Page id; `None` uses `me` (the Page the token belongs to).
        page_id: Option<String>,
    },
    /// Instagram Login: `/<version>/<ig user id>/messages` with a bearer token.
    InstagramLogin {
        /// The Instagram professional account's user id.
        ig_user_id: String,
    },
}

/// How to reach the Graph API. Holds the token as a reference;
/// [`InstagramChannel::connect`] resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstagramConfig {
    /// Page access token or Instagram user token, by reference.
    pub access_token: SecretRef,
    /// The route.
    pub endpoint: InstagramEndpoint,
    /// Graph API version, e.g. `v23.0`.
    pub api_version: String,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl InstagramConfig {
    /// A config for `endpoint` on its public API root.
    pub fn new(access_token: SecretRef, endpoint: InstagramEndpoint) -> Result<Self, ConfigError> {
        let base = match endpoint {
            InstagramEndpoint::Page { .. } => DEFAULT_BASE_URL,
            InstagramEndpoint::InstagramLogin { .. } => INSTAGRAM_LOGIN_BASE_URL,
        };
        Ok(Self {
            access_token,
            endpoint,
            api_version: DEFAULT_API_VERSION.to_owned(),
            http: HttpConfig::new(base)?,
        })
    }

    /// Reads a workspace's channel configuration: secret `access_token`; param
    /// `ig_user_id` selects the Instagram Login route, otherwise the Page route with
    /// the optional `page_id`; `api_version` (default [`DEFAULT_API_VERSION`]) and
    /// `base_url` (default the route's public root).
    pub fn from_channel_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let (endpoint, default_base) = match optional_param(config, "ig_user_id") {
            Some(id) => (
                InstagramEndpoint::InstagramLogin {
                    ig_user_id: id.to_owned(),
                },
                INSTAGRAM_LOGIN_BASE_URL,
            ),
            None => (
                InstagramEndpoint::Page {
                    page_id: optional_param(config, "page_id").map(str::to_owned),
                },
                DEFAULT_BASE_URL,
            ),
        };
        Ok(Self {
            access_token: secret_ref(config, "access_token")?,
            endpoint,
            api_version: optional_param(config, "api_version")
                .unwrap_or(DEFAULT_API_VERSION)
                .to_owned(),
            http: http_config(config, default_base)?,
        })
    }

    /// Uses Graph API `version`.
    #[must_use]
    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Uses `http` (another base URL, other timeouts).
    #[must_use]
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }
}

/// Sends Instagram direct messages.
pub struct InstagramChannel {
    client: ProviderClient,
    access_token: SecretString,
    endpoint: InstagramEndpoint,
    api_version: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for InstagramChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstagramChannel")
            .field("client", &self.client)
            .field("access_token", &"[redacted]")
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Recipient<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct SendRequest<'a> {
    recipient: Recipient<'a>,
    message: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messaging_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'static str>,
}

#[derive(Deserialize)]
struct SendResponse {
    message_id: String,
}

fn permanent(reason: impl Into<String>) -> ChannelError {
    ChannelError::Permanent {
        provider: PROVIDER,
        reason: reason.into(),
    }
}

impl InstagramChannel {
    /// A channel sending through `config`, its token resolved through `secrets` now
    /// (resolve again, by building a new channel, to pick up a rotated token).
    pub async fn connect(
        config: InstagramConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let access_token = secrets.resolve(&config.access_token).await?;
        Ok(Self::new(config, access_token)?)
    }

    /// A channel sending through `config` with `access_token`, the value behind
    /// `config.access_token` that the caller resolved itself.
    pub fn new(config: InstagramConfig, access_token: SecretString) -> Result<Self, ConfigError> {
        if config.api_version.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "api_version",
                reason: "must not be empty",
            });
        }
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            access_token,
            endpoint: config.endpoint,
            api_version: config.api_version,
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads "now" (for the conversation windows and receipts) from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client = self.client.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The request body, after the checks that need no network.
    fn body<'m>(&self, message: &'m OutboundMessage) -> Result<SendRequest<'m>, ChannelError> {
        let igsid = message.recipient.trim();
        if igsid.is_empty() || !igsid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ChannelError::InvalidRecipient {
                provider: PROVIDER,
                reason: "the recipient must be an Instagram-scoped id (digits)".to_owned(),
            });
        }
        if message.body.trim().is_empty() {
            return Err(permanent("the message text is empty"));
        }
        if message.body.len() > MAX_TEXT_BYTES {
            return Err(permanent(format!(
                "the text is {} bytes; Instagram allows {MAX_TEXT_BYTES}",
                message.body.len()
            )));
        }
        let last = last_inbound_at(PROVIDER, message)?;
        let now = self.clock.now();
        let human_agent = message
            .metadata
            .get("human_agent")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let (messaging_type, tag) = if WindowCheck::of(last, now, CUSTOMER_SERVICE_WINDOW).is_open()
        {
            (None, None)
        } else if human_agent && WindowCheck::of(last, now, HUMAN_AGENT_WINDOW).is_open() {
            (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
        } else {
            return Err(permanent(
                "outside the 24 h Instagram window (7 days for a human agent)",
            ));
        };
        Ok(SendRequest {
            recipient: Recipient { id: igsid },
            message: Text {
                text: &message.body,
            },
            messaging_type,
            tag,
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        match &self.endpoint {
            InstagramEndpoint::Page { page_id } => {
                let page = page_id.as_deref().unwrap_or("me");
                let request = self
                    .client
                    .request(Method::POST, &[&self.api_version, page, "messages"]);
                Auth::Query {
                    name: "access_token",
                    value: &self.access_token,
                }
                .apply(request)
            }
            InstagramEndpoint::InstagramLogin { ig_user_id } => {
                let request = self
                    .client
                    .request(Method::POST, &[&self.api_version, ig_user_id, "messages"]);
                Auth::Bearer(&self.access_token).apply(request)
            }
        }
    }
}

/// The Graph API's answer to a failed send, classified.
fn classify(response: &HttpResponse) -> ChannelError {
    let detail = response.error_detail();
    let reason = detail.summary();
    match (detail.code.as_deref(), detail.subcode) {
        (Some("190" | "10" | "200"), _) => ChannelError::Auth {
            provider: PROVIDER,
            reason,
        },
        (Some("4" | "17" | "32" | "613"), _) => ChannelError::RateLimited {
            provider: PROVIDER,
            retry_after: response.retry_after(),
        },
        (Some("551"), _) | (Some("100"), Some(2_018_001)) => ChannelError::InvalidRecipient {
            provider: PROVIDER,
            reason,
        },
        _ => response.channel_error_with(PROVIDER, &detail),
    }
}

#[async_trait]
impl ChannelAdapter for InstagramChannel {
    fn channel(&self) -> Channel {
        Channel::Instagram
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let span = send_span(PROVIDER, "send_message", &message.recipient);
        async {
            let body = self.body(message)?;
            let response = self
                .client
                .execute_for_channel(self.request().json(&body))
                .await?;
            if !response.is_success() {
                return Err(classify(&response));
            }
            Ok(SendReceipt {
                provider_message_id: response.json::<SendResponse>().ok().map(|r| r.message_id),
                accepted_at: self.clock.now(),
            })
        }
        .instrument(span)
        .await
    }
}
