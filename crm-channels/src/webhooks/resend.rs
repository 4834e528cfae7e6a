//! Resend webhooks: Svix signatures (the Standard Webhooks scheme) and Resend's email
//! events.
//!
//! | Resend `type` | Event |
//! |---|---|
//! | `email.delivered` | [`InboundEvent::Delivered`] |
//! | `email.bounced` | [`InboundEvent::Bounced`] per recipient (`permanent` when `bounce.type` is `Permanent`) |
//! | `email.complained` | [`InboundEvent::Complained`] per recipient |
//! | `email.opened` | [`InboundEvent::Opened`] |
//! | `email.clicked` | [`InboundEvent::Clicked`] with `click.link` |
//! | `email.failed` | [`InboundEvent::Failed`] with `failed.reason` |
//! | `email.suppressed` | [`InboundEvent::Failed`] with the suppression reason |
//! | `email.received` | [`InboundEvent::Reply`] from the sender |
//! | `email.sent`, `email.delivery_delayed`, `email.scheduled` | [`InboundEvent::StatusChanged`] |
//! | anything else (`contact.*`, `domain.*`, new types) | no event |

use std::fmt;

use chrono::{DateTime, Utc};
use crm_core::model::Channel;
use crm_core::secret::SecretString;
use crm_core::{InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError};
use serde_json::Value;

use super::WebhookConfig;
use super::payload::{bare_address, log_body, missing, parse_json, str_at, string_at};
use super::standard::StandardWebhookVerifier;

/// The provider name.
pub const PROVIDER: &str = "resend";

/// Verifies and parses Resend webhooks.
pub struct ResendWebhook {
    verifier: StandardWebhookVerifier,
}

impl ResendWebhook {
    /// A verifier for the endpoint's signing secret (`whsec_...`).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the secret is empty or not base64.
    pub fn new(secret: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        Ok(Self {
            verifier: StandardWebhookVerifier::new(&secret, config)?,
        })
    }

    /// The underlying Standard Webhooks verifier.
    #[must_use]
    pub fn verifier(&self) -> &StandardWebhookVerifier {
        &self.verifier
    }
}

impl fmt::Debug for ResendWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResendWebhook")
            .field("verifier", &self.verifier)
            .finish()
    }
}

impl InboundWebhook for ResendWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        self.verifier.verify(unverified, now)
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let body = &webhook.request().body;
        log_body(PROVIDER, body);
        parse_event(&parse_json(body)?)
    }
}

fn parse_event(event: &Value) -> Result<Vec<InboundEvent>, WebhookError> {
    let kind = str_at(event, &["type"]).ok_or_else(|| missing("type"))?;
    let data = event.get("data").ok_or_else(|| missing("data"))?;
    let channel = Channel::Email;
    let email_id = || string_at(data, &["email_id"]).ok_or_else(|| missing("data.email_id"));
    let events = match kind {
        "email.delivered" => vec![InboundEvent::Delivered {
            channel,
            provider_message_id: email_id()?,
        }],
        "email.opened" => vec![InboundEvent::Opened {
            channel,
            provider_message_id: email_id()?,
        }],
        "email.clicked" => vec![InboundEvent::Clicked {
            channel,
            provider_message_id: email_id()?,
            url: string_at(data, &["click", "link"]),
        }],
        "email.failed" => vec![InboundEvent::Failed {
            channel,
            provider_message_id: email_id()?,
            reason: string_at(data, &["failed", "reason"]),
        }],
        "email.suppressed" => vec![InboundEvent::Failed {
            channel,
            provider_message_id: email_id()?,
            reason: Some(match str_at(data, &["suppressed", "reason"]) {
                Some(reason) => format!("suppressed: {reason}"),
                None => "suppressed".to_owned(),
            }),
        }],
        "email.bounced" => {
            let permanent = str_at(data, &["bounce", "type"]) == Some("Permanent");
            recipients(data)?
                .into_iter()
                .map(|address| InboundEvent::Bounced {
                    channel,
                    provider_message_id: string_at(data, &["email_id"]),
                    address,
                    permanent,
                })
                .collect()
        }
        "email.complained" => recipients(data)?
            .into_iter()
            .map(|address| InboundEvent::Complained {
                channel,
                provider_message_id: string_at(data, &["email_id"]),
                address,
            })
            .collect(),
        "email.received" => vec![InboundEvent::Reply {
            channel,
            from: str_at(data, &["from"])
                .map(bare_address)
                .filter(|from| !from.is_empty())
                .ok_or_else(|| missing("data.from"))?,
            text: string_at(data, &["text"]),
            in_reply_to: None,
        }],
        "email.sent" | "email.delivery_delayed" | "email.scheduled" => {
            vec![InboundEvent::StatusChanged {
                channel,
                provider_message_id: email_id()?,
                status: kind.trim_start_matches("email.").to_owned(),
            }]
        }
        _ => Vec::new(),
    };
    Ok(events)
}

/// The recipients in `data.to` (an array, or a single string), as bare addresses.
fn recipients(data: &Value) -> Result<Vec<String>, WebhookError> {
    let addresses: Vec<String> = match data.get("to") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(bare_address)
            .filter(|a| !a.is_empty())
            .collect(),
        Some(Value::String(one)) => vec![bare_address(one)],
        _ => Vec::new(),
    };
    if addresses.is_empty() {
        return Err(missing("data.to"));
    }
    Ok(addresses)
}
