//! Inbound webhook verifiers and parsers.
//!
//! One type per provider implements [`crm_core::InboundWebhook`]; each sits behind its
//! cargo feature:
//!
//! | Type | Feature | Scheme |
//! |---|---|---|
//! | `resend::ResendWebhook` (on `standard::StandardWebhookVerifier`) | `resend` | Standard Webhooks / Svix `v1`, HMAC-SHA256 over `{id}.{ts}.{body}` |
//! | `twilio::TwilioWebhook` | `twilio` | `X-Twilio-Signature`, HMAC-SHA1 over URL + sorted params |
//! | `meta::InstagramWebhook` | `instagram` | `X-Hub-Signature-256: sha256=<hex>` plus the `hub.challenge` handshake |
//! | `cal_com::CalComWebhook` | `cal-com` | `X-Cal-Signature-256: <hex>` |
//! | `calendly::CalendlyWebhook` | `calendly` | `Calendly-Webhook-Signature: t=..,v1=..` |
//! | `slack::SlackWebhook` | `slack` | `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}` |
//!
//! Every verifier checks the signature over the raw body bytes before anything is parsed,
//! compares in constant time and takes `now` as an argument. Wrap a verifier in
//! [`dedup::Deduplicated`] to refuse deliveries already seen. Payloads reach `tracing` only
//! through [`redact`], at `DEBUG` level.

/// Helpers shared by the provider modules; some are unused when only a few provider
/// features are enabled.
#[cfg_attr(
    not(all(
        feature = "resend",
        feature = "twilio",
        feature = "instagram",
        feature = "cal-com",
        feature = "calendly",
        feature = "slack"
    )),
    allow(dead_code, unused_imports)
)]
mod support {
    pub(super) mod crypto;
    pub(super) mod payload;
}
#[allow(unused_imports)]
use support::{crypto, payload};

pub mod dedup;
pub mod redact;

#[cfg(feature = "cal-com")]
pub mod cal_com;
#[cfg(feature = "calendly")]
pub mod calendly;
#[cfg(feature = "instagram")]
pub mod meta;
#[cfg(feature = "resend")]
pub mod resend;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "resend")]
pub mod standard;
#[cfg(feature = "twilio")]
pub mod twilio;

pub use dedup::{Deduplicated, DeliveryLog, DeliveryStatus, MemoryDeliveryLog};

use chrono::Duration;

/// The default body limit of every verifier, 1 MiB: far above any provider's event
/// (they send a few KiB), far below what costs real CPU to hash or decode.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings shared by every verifier.
///
/// `tolerance` applies to the schemes that sign a timestamp (Standard Webhooks / Svix,
/// Calendly, Slack): a request is refused when its timestamp is more than `tolerance` in
/// the past or in the future. Schemes without a timestamp (Twilio, Meta, Cal.com) ignore it.
///
/// `max_body_bytes` applies to every verifier: a larger body is
/// [`WebhookError::TooLarge`](crm_core::WebhookError::TooLarge) before anything else
/// is done with it (no parsing, form decoding or HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Allowed clock difference; `None` means the provider's default (5 minutes for
    /// Standard Webhooks and Slack, 3 minutes for Calendly).
    pub tolerance: Option<Duration>,
    /// The largest body accepted, in bytes; `None` means [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: Option<usize>,
}

impl WebhookConfig {
    /// The provider defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timestamp tolerance (negative values count as zero).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance.max(Duration::zero()));
        self
    }

    /// Sets the largest body accepted, in bytes.
    #[must_use]
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = Some(limit);
        self
    }

    /// The body limit in use: the configured one or [`DEFAULT_MAX_BODY_BYTES`].
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }

    /// The configured tolerance, or `default` when none is set.
    #[must_use]
    pub fn tolerance_or(&self, default: Duration) -> Duration {
        self.tolerance.unwrap_or(default)
    }
}
