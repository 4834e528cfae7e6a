//! WhatsApp through Twilio's Programmable Messaging API.
//!
//! Built from a workspace's [`ChannelConfig`] (provider `twilio`): secret
//! `auth_token`, params `account_sid` (required), `from` or `messaging_service_sid`
//! (one required), `status_callback` and `base_url`; see
//! [`TwilioConfig::from_channel_config`].
//!
//! `POST /Accounts/{AccountSid}/Messages.json` (under `https://api.twilio.com/2010-04-01`),
//! HTTP Basic auth (Account SID, Auth Token), form-encoded body.
//!
//! # Free-form text or template
//! WhatsApp allows a free-form message only within 24 hours of the person's last
//! inbound message; outside that window only an approved template may be sent. The
//! adapter decides from [`OutboundMessage::metadata`]:
//!
//! | Field | Meaning |
//! |---|---|
//! | `content_sid` | An approved Content template (`HX...`). When present, the template is sent (`ContentSid`) and the body is not. |
//! | `content_variables` | The template's variables, an object (`{"1": "Ada"}`) or its JSON text; sent as `ContentVariables`. |
//! | `last_inbound_at` | RFC 3339 time of the person's last inbound message (see [`crate::window`]). |
//!
//! Without `content_sid`, the body is sent as `Body` if `last_inbound_at` lies within
//! the last 24 hours; otherwise (or when it is missing) the send fails with
//! `ChannelError::Permanent` before any request is made.
//!
//! The recipient is an E.164 number, with or without the `whatsapp:` prefix. The
//! configured status callback URL goes out as `StatusCallback` on every message.
//!
//! Twilio's message API takes no idempotency key, so none is sent; a retried send after
//! a timeout may deliver twice.
//!
//! # Errors
//! | Answer | Error |
//! |---|---|
//! | not an E.164 number (before any request) | `InvalidRecipient` |
//! | outside the window without template, empty or over-long body (before any request) | `Permanent` |
//! | Twilio code 21211, 21614, 63003 (invalid or non-WhatsApp number) | `InvalidRecipient` |
//! | 401 / 403 (code 20003) | `Auth` |
//! | 429 (code 20429) | `RateLimited` |
//! | other 400, 404 | `Permanent` |
//! | 5xx, timeout, connection failure | `Retryable` |

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use crm_core::model::Channel;
use crm_core::model::ChannelConfig;
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use crm_core::{
    ChannelAdapter, ChannelError, Clock, OutboundMessage, PhoneNumber, SendReceipt, SystemClock,
};
use http::Method;
use serde::Deserialize;
use tracing::Instrument;
use url::Url;

use crate::build::{BuildError, http_config, optional_param, param, secret_ref};
use crate::http::{Auth, ConfigError, HttpConfig, HttpResponse, ProviderClient, send_span};
use crate::window::{CUSTOMER_SERVICE_WINDOW, WindowCheck, last_inbound_at, metadata_str};

/// Twilio's REST API root (API version 2010-04-01).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com/2010-04-01";
/// Twilio's limit on `Body`, in characters.
pub const MAX_BODY_CHARS: usize = 1600;
const PROVIDER: &str = "twilio";
/// Twilio error codes meaning the number cannot receive the message.
const INVALID_RECIPIENT_CODES: &[&str] = &["21211", "21614", "63003"];

/// Who the message is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    /// A WhatsApp sender number; `whatsapp:` is added when missing (`From`).
    From(String),
    /// A Messaging Service (`MG...`), which picks the sender (`MessagingServiceSid`).
    MessagingService(String),
}

/// How to reach Twilio. Holds the Auth Token as a reference;
/// [`TwilioWhatsAppChannel::connect`] resolves it.
#[derive(Clone)]
#[non_exhaustive]
pub struct TwilioConfig {
    /// Account SID (`AC...`), also the Basic-auth user name.
    pub account_sid: String,
    /// Auth Token, the Basic-auth password, by reference.
    pub auth_token: SecretRef,
    /// The sender.
    pub sender: TwilioSender,
    /// Where Twilio reports delivery status (`StatusCallback`), if anywhere.
    pub status_callback: Option<Url>,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("sender", &self.sender)
            .field(
                "status_callback",
                &self.status_callback.as_ref().map(Url::as_str),
            )
            .field("http", &self.http)
            .finish()
    }
}

impl TwilioConfig {
    /// A config for the public API.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: SecretRef,
        sender: TwilioSender,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            account_sid: account_sid.into(),
            auth_token,
            sender,
            status_callback: None,
            http: HttpConfig::new(DEFAULT_BASE_URL)?,
        })
    }

    /// Reads a workspace's channel configuration: secret `auth_token`, params
    /// `account_sid` (required), `from` (a WhatsApp sender number) or
    /// `messaging_service_sid` (one of them required; `from` wins), `status_callback`
    /// (a URL) and `base_url` (default [`DEFAULT_BASE_URL`]).
    pub fn from_channel_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let sender = match (
            optional_param(config, "from"),
            optional_param(config, "messaging_service_sid"),
        ) {
            (Some(from), _) => TwilioSender::From(from.to_owned()),
            (None, Some(sid)) => TwilioSender::MessagingService(sid.to_owned()),
            (None, None) => return Err(ConfigError::Missing { field: "from" }),
        };
        let status_callback = optional_param(config, "status_callback")
            .map(Url::parse)
            .transpose()
            .map_err(|_| ConfigError::Invalid {
                field: "status_callback",
                reason: "must be a URL",
            })?;
        Ok(Self {
            account_sid: param(config, "account_sid")?.to_owned(),
            auth_token: secret_ref(config, "auth_token")?,
            sender,
            status_callback,
            http: http_config(config, DEFAULT_BASE_URL)?,
        })
    }

    /// Sets the status callback URL.
    #[must_use]
    pub fn with_status_callback(mut self, url: Url) -> Self {
        self.status_callback = Some(url);
        self
    }

    /// Uses `http` (another base URL, other timeouts).
    #[must_use]
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }
}

/// Sends WhatsApp messages through Twilio.
pub struct TwilioWhatsAppChannel {
    client: ProviderClient,
    account_sid: String,
    auth_token: SecretString,
    sender: (&'static str, String),
    status_callback: Option<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TwilioWhatsAppChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioWhatsAppChannel")
            .field("client", &self.client)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
}

/// `whatsapp:+<E.164>` for a recipient given with or without the prefix.
fn whatsapp_address(recipient: &str) -> Result<String, ChannelError> {
    let number = recipient.trim();
    let number = number.strip_prefix("whatsapp:").unwrap_or(number);
    PhoneNumber::parse(number)
        .map(|n| format!("whatsapp:{}", n.as_str()))
        .map_err(|e| ChannelError::InvalidRecipient {
            provider: PROVIDER,
            reason: e.to_string(),
        })
}

fn permanent(reason: impl Into<String>) -> ChannelError {
    ChannelError::Permanent {
        provider: PROVIDER,
        reason: reason.into(),
    }
}

impl TwilioWhatsAppChannel {
    /// A channel sending through `config`, its Auth Token resolved through `secrets`
    /// now (resolve again, by building a new channel, to pick up a rotated token).
    pub async fn connect(
        config: TwilioConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let auth_token = secrets.resolve(&config.auth_token).await?;
        Ok(Self::new(config, auth_token)?)
    }

    /// A channel sending through `config` with `auth_token`, the value behind
    /// `config.auth_token` that the caller resolved itself.
    pub fn new(config: TwilioConfig, auth_token: SecretString) -> Result<Self, ConfigError> {
        if config.account_sid.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "account_sid",
                reason: "must not be empty",
            });
        }
        let sender = match config.sender {
            TwilioSender::From(from) => {
                let number = from.strip_prefix("whatsapp:").unwrap_or(&from);
                let number = PhoneNumber::parse(number).map_err(|_| ConfigError::Invalid {
                    field: "sender",
                    reason: "must be an E.164 number, optionally prefixed with whatsapp:",
                })?;
                ("From", format!("whatsapp:{}", number.as_str()))
            }
            TwilioSender::MessagingService(sid) => ("MessagingServiceSid", sid),
        };
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            account_sid: config.account_sid,
            auth_token,
            sender,
            status_callback: config.status_callback.map(String::from),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads "now" (for the 24-hour window and receipts) from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client = self.client.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The form fields for `message`, in the order they are sent.
    fn form(&self, message: &OutboundMessage) -> Result<Vec<(&'static str, String)>, ChannelError> {
        let mut form = vec![
            ("To", whatsapp_address(&message.recipient)?),
            (self.sender.0, self.sender.1.clone()),
        ];
        if let Some(content_sid) = metadata_str(message, "content_sid") {
            form.push(("ContentSid", content_sid.to_owned()));
            match message.metadata.get("content_variables") {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(text)) => {
                    form.push(("ContentVariables", text.clone()));
                }
                Some(value @ serde_json::Value::Object(_)) => {
                    form.push(("ContentVariables", value.to_string()));
                }
                Some(_) => {
                    return Err(permanent(
                        "metadata.content_variables must be an object or JSON text",
                    ));
                }
            }
        } else {
            let last = last_inbound_at(PROVIDER, message)?;
            if !WindowCheck::of(last, self.clock.now(), CUSTOMER_SERVICE_WINDOW).is_open() {
                return Err(permanent(
                    "outside the 24 h WhatsApp window a template is required (metadata.content_sid)",
                ));
            }
            if message.body.trim().is_empty() {
                return Err(permanent("the message body is empty"));
            }
            if message.body.chars().count() > MAX_BODY_CHARS {
                return Err(permanent(format!(
                    "the body exceeds Twilio's {MAX_BODY_CHARS} characters"
                )));
            }
            form.push(("Body", message.body.clone()));
        }
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.clone()));
        }
        Ok(form)
    }
}

/// Twilio's answer to a failed send, classified.
fn classify(response: &HttpResponse) -> ChannelError {
    let detail = response.error_detail();
    match detail.code.as_deref() {
        Some(code) if INVALID_RECIPIENT_CODES.contains(&code) => ChannelError::InvalidRecipient {
            provider: PROVIDER,
            reason: detail.summary(),
        },
        Some("20429") => ChannelError::RateLimited {
            provider: PROVIDER,
            retry_after: response.retry_after(),
        },
        _ => response.channel_error_with(PROVIDER, &detail),
    }
}

#[async_trait]
impl ChannelAdapter for TwilioWhatsAppChannel {
    fn channel(&self) -> Channel {
        Channel::WhatsApp
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let span = send_span(PROVIDER, "send_whatsapp", &message.recipient);
        async {
            let form = self.form(message)?;
            let request = self
                .client
                .request(
                    Method::POST,
                    &["Accounts", &self.account_sid, "Messages.json"],
                )
                .form(&form);
            let auth = Auth::Basic {
                user: &self.account_sid,
                password: Some(&self.auth_token),
            };
            let response = self.client.execute_for_channel(auth.apply(request)).await?;
            if !response.is_success() {
                return Err(classify(&response));
            }
            Ok(SendReceipt {
                provider_message_id: response.json::<MessageResource>().ok().map(|m| m.sid),
                accepted_at: self.clock.now(),
            })
        }
        .instrument(span)
        .await
    }
}
