//! Calendly webhooks: `Calendly-Webhook-Signature: t=<ts>,v1=<hex>` and invitee events.
//!
//! The header is split on `,` and then on `=`; it carries one `t` (unix seconds) and one
//! or more `v1` entries (any match passes). The signed content is `{t}.{raw body}`,
//! HMAC-SHA256 keyed by the subscription's signing key, hex. The timestamp must be within
//! the tolerance (default 3 minutes, as in Calendly's guidance) in both directions.
//! The delivery id is `{event}:{payload.uri}`, read after the signature matched.
//!
//! Parsing: `invitee.created` becomes [`InboundEvent::MeetingBooked`] and
//! `invitee.canceled` [`InboundEvent::MeetingCancelled`], both with the invitee URI as
//! booking id (a reschedule arrives as a cancel plus a create). Other events produce none.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError};

use super::WebhookConfig;
use super::crypto::{body_id, check_body_size};
use super::crypto::{
    check_tolerance, hmac_sha256, mac_matches_hex, parse_unix_seconds, require_secret,
    required_header,
};
use super::payload::{log_body, missing, parse_json, str_at, string_at, time_at};

/// The provider name.
pub const PROVIDER: &str = "calendly";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "calendly-webhook-signature";
/// The default tolerance in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 3 * 60;

/// Verifies and parses Calendly webhooks.
pub struct CalendlyWebhook {
    signing_key: SecretString,
    tolerance: Duration,
    max_body: usize,
}

impl CalendlyWebhook {
    /// A verifier for the subscription's signing key.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the key is empty.
    pub fn new(signing_key: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        require_secret(&signing_key)?;
        Ok(Self {
            signing_key,
            tolerance: config.tolerance_or(Duration::seconds(DEFAULT_TOLERANCE_SECS)),
            max_body: config.max_body_bytes(),
        })
    }

    /// The timestamp tolerance in use.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }
}

impl fmt::Debug for CalendlyWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalendlyWebhook")
            .field("signing_key", &"[redacted]")
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// The parts of a signature header: the timestamp text and every `v1` value.
fn split_header(header: &str) -> Result<(&str, Vec<&str>), WebhookError> {
    let malformed = |reason: &str| WebhookError::MalformedHeader {
        header: SIGNATURE_HEADER,
        reason: reason.to_owned(),
    };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = Some(value.trim()),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no t= entry"))?;
    if signatures.is_empty() {
        return Err(malformed("no v1= entry"));
    }
    Ok((timestamp, signatures))
}

impl InboundWebhook for CalendlyWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let request = unverified.request();
        check_body_size(request, self.max_body)?;
        let header = required_header(request, SIGNATURE_HEADER)?;
        let (timestamp, signatures) = split_header(header)?;
        let seconds = parse_unix_seconds(SIGNATURE_HEADER, timestamp)?;
        check_tolerance(seconds, now, self.tolerance)?;
        let mac = hmac_sha256(
            self.signing_key.expose_secret().as_bytes(),
            &[timestamp.as_bytes(), b".", &request.body],
        )?;
        let matched = signatures.iter().fold(false, |any, candidate| {
            any | mac_matches_hex(&mac, candidate)
        });
        if !matched {
            return Err(WebhookError::InvalidSignature);
        }
        let delivery_id = parse_json(&request.body).ok().and_then(|root| {
            let event = str_at(&root, &["event"])?;
            let uri = str_at(&root, &["payload", "uri"])?;
            Some(format!("{event}:{uri}"))
        });
        Ok(unverified.accept(body_id(delivery_id)?))
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let body = &webhook.request().body;
        log_body(PROVIDER, body);
        let root = parse_json(body)?;
        let event = str_at(&root, &["event"]).ok_or_else(|| missing("event"))?;
        let payload = root.get("payload").ok_or_else(|| missing("payload"))?;
        let email = || string_at(payload, &["email"]).ok_or_else(|| missing("payload.email"));
        let booking_id = string_at(payload, &["uri"]);
        let events = match event {
            "invitee.created" => vec![InboundEvent::MeetingBooked {
                email: email()?,
                starts_at: time_at(payload, &["scheduled_event", "start_time"]),
                booking_id,
            }],
            "invitee.canceled" => vec![InboundEvent::MeetingCancelled {
                email: email()?,
                booking_id,
            }],
            _ => Vec::new(),
        };
        Ok(events)
    }
}
