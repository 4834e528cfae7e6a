//! Outbound channel adapters.

use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crate::model::{Channel, OutboxMessage};
use crate::redact::{Masked, MaskedAddress, MaskedJson, masked_opt};

pub mod dry_run;
pub mod resolver;

pub use dry_run::{DryRunChannel, DryRunRecord};
pub use resolver::ChannelResolver;

/// One message as an adapter sees it. Its `Debug` masks the recipient, subject, body and
/// metadata.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The outbox id. Adapters MUST pass it to the provider as idempotency key where
    /// the provider supports one.
    pub id: OutboxMessageId,
    /// Sending workspace.
    pub workspace_id: WorkspaceId,
    /// Channel.
    pub channel: Channel,
    /// Channel-specific address.
    pub recipient: String,
    /// The contact, if known.
    pub contact_id: Option<ContactId>,
    /// Subject, for channels that have one.
    pub subject: Option<String>,
    /// Body to send (an approver's edit, when there was one).
    pub body: String,
    /// Adapter-specific extras (template ids, variables, ...).
    pub metadata: serde_json::Value,
}

impl OutboundMessage {
    /// The adapter view of an outbox message.
    #[must_use]
    pub fn from_outbox(message: &OutboxMessage) -> Self {
        Self {
            id: message.id,
            workspace_id: message.workspace_id,
            channel: message.channel,
            recipient: message.recipient.clone(),
            contact_id: message.contact_id,
            subject: message.subject.clone(),
            body: message.body.clone(),
            metadata: message.metadata.clone(),
        }
    }

    /// The idempotency key to hand to the provider: the outbox id as text.
    #[must_use]
    pub fn idempotency_key(&self) -> String {
        self.id.to_string()
    }
}

impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("channel", &self.channel)
            .field("recipient", &MaskedAddress(&self.recipient))
            .field("contact_id", &self.contact_id)
            .field("subject", &masked_opt(self.subject.as_deref()))
            .field("body", &Masked(&self.body))
            .field("metadata", &MaskedJson(&self.metadata))
            .finish()
    }
}

/// What the provider answered on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    /// The provider's message id, if it returns one.
    pub provider_message_id: Option<String>,
    /// When the provider accepted the message.
    pub accepted_at: DateTime<Utc>,
}

/// The coarse class of a [`ChannelError`]: what the dispatcher does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelErrorKind {
    /// Try again later (with backoff).
    Retryable,
    /// Try again after the provider's `retry_after`.
    RateLimited,
    /// Do not retry; fail the message.
    Permanent,
    /// Do not retry; fail and suppress the address.
    InvalidRecipient,
    /// Credentials are wrong or lack permission; retrying will not help until fixed.
    Auth,
    /// The workspace's channel is not configured, or its configuration cannot be used
    /// (unknown provider, missing parameter, unresolvable secret). Retried with
    /// backoff: a configuration fixed within the retry budget rescues the message.
    Configuration,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A transient failure: timeout, connection reset, 5xx.
    #[error("transient failure from {provider}: {reason}")]
    Retryable {
        /// Provider name.
        provider: &'static str,
        /// What happened (never contains credentials or message content).
        reason: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The provider throttled us (HTTP 429 and the like).
    #[error("rate limited by {provider}")]
    RateLimited {
        /// Provider name.
        provider: &'static str,
        /// How long to wait, from `Retry-After` or rate-limit headers.
        retry_after: Option<Duration>,
    },
    /// The provider rejected the message for good (validation, policy, content).
    #[error("{provider} rejected the message: {reason}")]
    Permanent {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
    /// The address cannot receive messages (unknown user, invalid number).
    #[error("{provider} reports an invalid recipient: {reason}")]
    InvalidRecipient {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
    /// Credentials missing, invalid or without permission.
    #[error("{provider} refused our credentials: {reason}")]
    Auth {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
    /// No adapter could be made for the channel: it is not configured for the
    /// workspace, names an unknown provider, lacks a parameter, or a secret reference
    /// cannot be resolved. Nothing was sent.
    #[error("{channel} is not usable as configured: {reason}")]
    Configuration {
        /// The channel.
        channel: Channel,
        /// What is wrong (names parameters and secret references, never secret
        /// values).
        reason: String,
        /// The underlying error, if any (kept out of the message, which is stored as
        /// the outbox message's `last_error`).
        #[source]
        source: Option<BoxError>,
    },
}

impl ChannelError {
    /// The error's class.
    #[must_use]
    pub fn kind(&self) -> ChannelErrorKind {
        match self {
            Self::Retryable { .. } => ChannelErrorKind::Retryable,
            Self::RateLimited { .. } => ChannelErrorKind::RateLimited,
            Self::Permanent { .. } => ChannelErrorKind::Permanent,
            Self::InvalidRecipient { .. } => ChannelErrorKind::InvalidRecipient,
            Self::Auth { .. } => ChannelErrorKind::Auth,
            Self::Configuration { .. } => ChannelErrorKind::Configuration,
        }
    }

    /// A [`ChannelError::Configuration`] without a source.
    #[must_use]
    pub fn configuration(channel: Channel, reason: impl Into<String>) -> Self {
        Self::Configuration {
            channel,
            reason: reason.into(),
            source: None,
        }
    }

    /// Whether sending again later may succeed. A configuration error is retryable:
    /// the host may fix the settings or add the secret before the budget is spent.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Retryable { .. } | Self::RateLimited { .. } | Self::Configuration { .. }
        )
    }

    /// How long the provider asked us to wait, if it said.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether the address should be suppressed.
    #[must_use]
    pub fn suppresses_recipient(&self) -> bool {
        matches!(self, Self::InvalidRecipient { .. })
    }
}

/// Sends messages on one channel through one provider.
///
/// # Contract
/// - `send` MUST forward [`OutboundMessage::idempotency_key`] to the provider where the
///   provider supports idempotency, so a retried send is not delivered twice.
/// - Errors MUST be classified: 429 → `RateLimited` (with `retry_after` from the
///   response), 5xx/timeouts → `Retryable`, other 4xx → `Permanent`, `InvalidRecipient`
///   or `Auth`.
/// - MUST NOT log credentials, and SHOULD NOT log message bodies or raw addresses.
///
/// # Implementing
/// Run the adapter conformance kit (`crm_testkit::adapter`) against your adapter.
#[async_trait]
pub trait ChannelAdapter: Send + Sync + Debug + 'static {
    /// The channel this adapter sends on.
    fn channel(&self) -> Channel;

    /// A short provider name for logs and errors, e.g. `"resend"`.
    fn provider(&self) -> &'static str;

    /// Sends one message.
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_message_debug_masks_personal_data() {
        let message = OutboundMessage {
            id: OutboxMessageId::new(),
            workspace_id: WorkspaceId::new(),
            channel: Channel::WhatsApp,
            recipient: "whatsapp:+4915112345678".into(),
            contact_id: None,
            subject: Some("About your diagnosis".into()),
            body: "Dear Jane, the results are in".into(),
            metadata: serde_json::json!({"to_name": "Jane Roe"}),
        };
        let debug = format!("{message:?}");
        for secret in ["151123", "diagnosis", "results", "Jane"] {
            assert!(!debug.contains(secret), "{secret:?} leaks in {debug}");
        }
        assert!(debug.contains(&message.id.to_string()), "{debug}");
        assert!(debug.contains("+***78"), "{debug}");
    }

    #[test]
    fn channel_errors_classify_themselves() {
        let limited = ChannelError::RateLimited {
            provider: "x",
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        let invalid = ChannelError::InvalidRecipient {
            provider: "x",
            reason: "unknown number".into(),
        };
        assert!(!invalid.is_retryable());
        assert!(invalid.suppresses_recipient());
        assert_eq!(invalid.kind(), ChannelErrorKind::InvalidRecipient);
        let unconfigured = ChannelError::configuration(Channel::Email, "no provider");
        assert_eq!(unconfigured.kind(), ChannelErrorKind::Configuration);
        assert!(unconfigured.is_retryable());
        assert!(!unconfigured.suppresses_recipient());
        assert_eq!(unconfigured.retry_after(), None);
    }
}
