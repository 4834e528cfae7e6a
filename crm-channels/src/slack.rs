//! Slack as a [`Notifier`] for the approval inbox.
//!
//! `POST https://slack.com/api/chat.postMessage` with `Authorization: Bearer xoxb-...`
//! (scope `chat:write`) and a JSON body: the channel, a fallback `text`, and `blocks`
//! showing the drafted message with an actions block of two buttons, `approve`
//! (primary) and `reject` (danger), whose `value` is the approval item id. The
//! interactivity webhook (`crate::webhooks::slack`) turns a click back into an
//! `InboundEvent::ApprovalDecision`.
//!
//! Slack answers HTTP 200 even on failure; the body's `ok` decides:
//!
//! | Answer | Error |
//! |---|---|
//! | `ok:false` with `invalid_auth`, `not_authed`, `account_inactive`, `token_revoked`, `missing_scope` | `Auth` |
//! | `ok:false` with `rate_limited` / `ratelimited`, or HTTP 429 | `RateLimited` (`Retry-After`) |
//! | `ok:false` with `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout` | `Retryable` |
//! | `ok:false` with anything else (`channel_not_found`, `not_in_channel`, `is_archived`, `msg_too_long`, ...) | `Permanent` |
//! | HTTP 5xx, timeout, connection failure | `Retryable` |

use std::fmt;

use async_trait::async_trait;
use crm_core::ChannelError;
use crm_core::approval::Notifier;
use crm_core::model::ApprovalItem;
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use http::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use crate::build::BuildError;
use crate::http::{Auth, ConfigError, ErrorDetail, HttpConfig, HttpResponse, ProviderClient};
use crate::webhooks::slack::{APPROVE_ACTION_ID, REJECT_ACTION_ID};

/// Slack's Web API root.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";
/// At most this many characters of the draft are shown (a section allows 3000).
pub const MAX_PREVIEW_CHARS: usize = 2900;
const PROVIDER: &str = "slack";

/// How to reach Slack.
#[derive(Clone)]
#[non_exhaustive]
pub struct SlackConfig {
    /// Bot token (`xoxb-...`) with `chat:write`, by reference.
    pub bot_token: SecretRef,
    /// The channel (id or name) approvals are posted to.
    pub channel: String,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("bot_token", &"[redacted]")
            .field("channel", &self.channel)
            .field("http", &self.http)
            .finish()
    }
}

impl SlackConfig {
    /// A config for the public API.
    pub fn new(bot_token: SecretRef, channel: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            bot_token,
            channel: channel.into(),
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

/// Where a posted message landed, to update or thread on it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    /// The channel id.
    pub channel: String,
    /// The message timestamp (Slack's message id).
    pub ts: String,
}

/// Posts approval requests to a Slack channel.
pub struct SlackNotifier {
    client: ProviderClient,
    bot_token: SecretString,
    channel: String,
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("client", &self.client)
            .field("bot_token", &"[redacted]")
            .field("channel", &self.channel)
            .finish()
    }
}

#[derive(Deserialize)]
struct PostMessageResponse {
    ok: bool,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

fn preview(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_PREVIEW_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// The `chat.postMessage` body for `item`.
fn payload(channel: &str, item: &ApprovalItem) -> serde_json::Value {
    let item_id = item.id.to_string();
    let draft = item.edited_body.as_deref().unwrap_or(&item.original_body);
    let mut facts = vec![format!("*Channel:* {}", item.channel)];
    if let Some(confidence) = item.confidence {
        facts.push(format!("*Confidence:* {:.0}%", confidence * 100.0));
    }
    if let Some(reason) = &item.reason {
        facts.push(format!("*Why:* {}", preview(reason)));
    }
    facts.push(format!("*Expires:* {}", item.expires_at.to_rfc3339()));
    json!({
        "channel": channel,
        "text": format!("Approval needed: {} message", item.channel),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": facts.join("\n")}},
            {"type": "section", "text": {"type": "plain_text", "text": preview(draft)}},
            {
                "type": "actions",
                "block_id": item_id,
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "action_id": APPROVE_ACTION_ID,
                        "value": item_id
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "action_id": REJECT_ACTION_ID,
                        "value": item_id
                    }
                ]
            }
        ]
    })
}

/// An `ok:false` answer, classified.
fn classify_not_ok(response: &HttpResponse, detail: &ErrorDetail) -> ChannelError {
    let reason = detail.summary();
    match detail.code.as_deref().unwrap_or_default() {
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "missing_scope" => {
            ChannelError::Auth {
                provider: PROVIDER,
                reason,
            }
        }
        "rate_limited" | "ratelimited" => ChannelError::RateLimited {
            provider: PROVIDER,
            retry_after: response.retry_after(),
        },
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            ChannelError::Retryable {
                provider: PROVIDER,
                reason,
                retry_after: response.retry_after(),
                source: None,
            }
        }
        _ => ChannelError::Permanent {
            provider: PROVIDER,
            reason: if reason.is_empty() {
                "ok:false without an error code".to_owned()
            } else {
                reason
            },
        },
    }
}

impl SlackNotifier {
    /// A notifier posting through `config`, its bot token resolved through `secrets` now
    /// (build a new one to pick up a rotated bot token).
    pub async fn connect(
        config: SlackConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let bot_token = secrets.resolve(&config.bot_token).await?;
        Ok(Self::new(config, bot_token)?)
    }

    /// A notifier posting through `config` with `bot_token`, the value behind
    /// `config.bot_token` that the caller resolved itself.
    pub fn new(config: SlackConfig, bot_token: SecretString) -> Result<Self, ConfigError> {
        if config.channel.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "channel",
                reason: "must not be empty",
            });
        }
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            bot_token,
            channel: config.channel,
        })
    }

    /// Posts the approval request for `item` and returns where it landed.
    pub async fn post_approval(&self, item: &ApprovalItem) -> Result<PostedMessage, ChannelError> {
        let span = tracing::info_span!("provider_call", provider = PROVIDER, operation = "chat.postMessage", item_id = %item.id);
        async {
            let body = payload(&self.channel, item).to_string();
            let request = self
                .client
                .request(Method::POST, &["chat.postMessage"])
                .header(
                    http::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(body);
            let response = self
                .client
                .execute_for_channel(Auth::Bearer(&self.bot_token).apply(request))
                .await?;
            if !response.is_success() {
                return Err(response.channel_error(PROVIDER));
            }
            let answer: PostMessageResponse = response.channel_json(PROVIDER)?;
            if !answer.ok {
                return Err(classify_not_ok(&response, &response.error_detail()));
            }
            Ok(PostedMessage {
                channel: answer.channel.unwrap_or_else(|| self.channel.clone()),
                ts: answer.ts.unwrap_or_default(),
            })
        }
        .instrument(span)
        .await
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn approval_needed(&self, item: &ApprovalItem) -> Result<(), ChannelError> {
        self.post_approval(item).await.map(|_| ())
    }
}
