//! Cal.com webhooks: `X-Cal-Signature-256` and booking events.
//!
//! The header is the lowercase hex HMAC-SHA256 of the raw body keyed by the webhook
//! secret, with no prefix and no timestamp (the tolerance is unused). When the sender has
//! no secret configured it sends the literal `no-secret-provided`; that is refused.
//! The delivery id is `{triggerEvent}:{payload.uid}`, read after the signature matched.
//!
//! Parsing: `BOOKING_CREATED` becomes [`InboundEvent::MeetingBooked`] per attendee;
//! `BOOKING_RESCHEDULED` cancels the previous booking (`rescheduleUid`, when given) and
//! books the new one; `BOOKING_CANCELLED` and `BOOKING_REJECTED` become
//! [`InboundEvent::MeetingCancelled`]. Other triggers produce no event.

use std::fmt;

use chrono::{DateTime, Utc};
use crm_core::secret::SecretString;
use crm_core::{InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError};
use serde_json::Value;

use super::WebhookConfig;
use super::crypto::{body_id, check_body_size};
use super::crypto::{require_secret, required_header, verify_body_hex};
use super::payload::number_text_at;
use super::payload::{log_body, missing, parse_json, str_at, string_at, time_at};

/// The provider name.
pub const PROVIDER: &str = "cal_com";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-cal-signature-256";
/// What Cal.com sends in the signature header when the webhook has no secret.
pub const NO_SECRET_SENTINEL: &str = "no-secret-provided";

/// Verifies and parses Cal.com webhooks.
pub struct CalComWebhook {
    secret: SecretString,
    config: WebhookConfig,
}

impl CalComWebhook {
    /// A verifier for the webhook's secret.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the secret is empty.
    pub fn new(secret: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        require_secret(&secret)?;
        Ok(Self { secret, config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }
}

impl fmt::Debug for CalComWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalComWebhook")
            .field("secret", &"[redacted]")
            .field("config", &self.config)
            .finish()
    }
}

impl InboundWebhook for CalComWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        _now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let request = unverified.request();
        check_body_size(request, self.config.max_body_bytes())?;
        let signature = required_header(request, SIGNATURE_HEADER)?;
        if signature.eq_ignore_ascii_case(NO_SECRET_SENTINEL) {
            return Err(WebhookError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "the sender has no secret configured (no-secret-provided)".to_owned(),
            });
        }
        verify_body_hex(&self.secret, &request.body, signature)?;
        let delivery_id = parse_json(&request.body).ok().and_then(|root| {
            let trigger = str_at(&root, &["triggerEvent"])?;
            let uid = str_at(&root, &["payload", "uid"])?;
            Some(format!("{trigger}:{uid}"))
        });
        Ok(unverified.accept(body_id(delivery_id)?))
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let body = &webhook.request().body;
        log_body(PROVIDER, body);
        let root = parse_json(body)?;
        let trigger = str_at(&root, &["triggerEvent"]).ok_or_else(|| missing("triggerEvent"))?;
        let Some(payload) = root.get("payload") else {
            return Ok(Vec::new());
        };
        // A numeric `bookingId` keeps its exact text (never through `f64`).
        let booking_id = string_at(payload, &["uid"])
            .or_else(|| number_text_at(body, &["payload", "bookingId"]));
        let events = match trigger {
            "BOOKING_CREATED" => booked(payload, booking_id)?,
            "BOOKING_RESCHEDULED" => {
                let mut events: Vec<InboundEvent> = match string_at(payload, &["rescheduleUid"]) {
                    Some(previous) => attendees(payload)?
                        .into_iter()
                        .map(|email| InboundEvent::MeetingCancelled {
                            email,
                            booking_id: Some(previous.clone()),
                        })
                        .collect(),
                    None => Vec::new(),
                };
                events.extend(booked(payload, booking_id)?);
                events
            }
            "BOOKING_CANCELLED" | "BOOKING_REJECTED" => attendees(payload)?
                .into_iter()
                .map(|email| InboundEvent::MeetingCancelled {
                    email,
                    booking_id: booking_id.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(events)
    }
}

fn booked(payload: &Value, booking_id: Option<String>) -> Result<Vec<InboundEvent>, WebhookError> {
    let starts_at = time_at(payload, &["startTime"]);
    Ok(attendees(payload)?
        .into_iter()
        .map(|email| InboundEvent::MeetingBooked {
            email,
            starts_at,
            booking_id: booking_id.clone(),
        })
        .collect())
}

/// Attendee emails (`attendees[].email`, else `responses.email.value`).
fn attendees(payload: &Value) -> Result<Vec<String>, WebhookError> {
    let mut emails: Vec<String> = payload
        .get("attendees")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| string_at(a, &["email"]))
        .collect();
    if emails.is_empty() {
        emails.extend(string_at(payload, &["responses", "email", "value"]));
    }
    if emails.is_empty() {
        return Err(missing("payload.attendees[].email"));
    }
    Ok(emails)
}
