//! Slack request signing (`v0`) and approval buttons.
//!
//! `X-Slack-Signature: v0=<hex>` is HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw
//! body}` keyed by the signing secret as UTF-8 text; the timestamp must be within the
//! tolerance (default 5 minutes) in both directions. The form body is decoded only after
//! the signature matched. The delivery id is the Events API `event_id`, or the
//! interaction's `trigger_id`.
//!
//! Parsing: a `block_actions` interaction (`payload=<json>`) turns each button whose
//! `action_id` is [`APPROVE_ACTION_ID`] or [`REJECT_ACTION_ID`] (optionally followed by
//! `:`, `_`, `-` or `.` and a suffix) into an [`InboundEvent::ApprovalDecision`] for the
//! item named by the button's `value` (else its `block_id`), decided by `user.id`. Other
//! requests produce no event; see [`SlackWebhook::url_verification_challenge`] for the
//! Events API handshake.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError};
use hmac::Mac;
use serde_json::Value;

use super::WebhookConfig;
use super::crypto::{
    HmacSha256, check_tolerance, hmac_sha256, mac_matches_hex, parse_unix_seconds, require_secret,
    required_header,
};
use super::crypto::{body_id, check_body_size};
use super::payload::form_fields;
use super::payload::{form_pairs, form_value, log_form, missing, parse_json, str_at, string_at};

/// The provider name.
pub const PROVIDER: &str = "slack";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The signature version prefix.
pub const SIGNATURE_PREFIX: &str = "v0=";
/// The default tolerance in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;
/// `action_id` of an approve button.
pub const APPROVE_ACTION_ID: &str = "approve";
/// `action_id` of a reject button.
pub const REJECT_ACTION_ID: &str = "reject";

/// Verifies Slack requests and parses approval button clicks.
pub struct SlackWebhook {
    signing_secret: SecretString,
    tolerance: Duration,
    max_body: usize,
}

impl SlackWebhook {
    /// A verifier for the app's signing secret.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the secret is empty.
    pub fn new(signing_secret: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        require_secret(&signing_secret)?;
        Ok(Self {
            signing_secret,
            tolerance: config.tolerance_or(Duration::seconds(DEFAULT_TOLERANCE_SECS)),
            max_body: config.max_body_bytes(),
        })
    }

    /// The timestamp tolerance in use.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The `v0=<hex>` signature Slack would send for `body` at `timestamp`.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] if the secret cannot key an HMAC (never for HMAC).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
        let mac = self.mac(&timestamp.to_string(), body)?;
        Ok(format!(
            "{SIGNATURE_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Result<HmacSha256, WebhookError> {
        hmac_sha256(
            self.signing_secret.expose_secret().as_bytes(),
            &[b"v0:", timestamp.as_bytes(), b":", body],
        )
    }

    /// For a verified Events API `url_verification` request, the `challenge` to echo back.
    #[must_use]
    pub fn url_verification_challenge(&self, webhook: &VerifiedWebhook<'_>) -> Option<String> {
        let root = parse_json(&webhook.request().body).ok()?;
        if str_at(&root, &["type"]) != Some("url_verification") {
            return None;
        }
        string_at(&root, &["challenge"])
    }
}

impl fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhook")
            .field("signing_secret", &"[redacted]")
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl InboundWebhook for SlackWebhook {
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
        let timestamp = required_header(request, TIMESTAMP_HEADER)?;
        let signature = required_header(request, SIGNATURE_HEADER)?;
        let seconds = parse_unix_seconds(TIMESTAMP_HEADER, timestamp)?;
        check_tolerance(seconds, now, self.tolerance)?;
        let digest = signature.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            WebhookError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "expected v0=<hex>".to_owned(),
            }
        })?;
        if !mac_matches_hex(&self.mac(timestamp, &request.body)?, digest) {
            return Err(WebhookError::InvalidSignature);
        }
        Ok(unverified.accept(body_id(delivery_id(&request.body))?))
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let body = &webhook.request().body;
        if is_json(body) {
            // Events API callbacks (including url_verification) carry no approval.
            return Ok(Vec::new());
        }
        let pairs = form_fields(body);
        log_form(PROVIDER, &pairs);
        let Some(payload) = form_value(&pairs, "payload") else {
            return Ok(Vec::new());
        };
        let payload = parse_json(payload.as_bytes())?;
        if str_at(&payload, &["type"]) != Some("block_actions") {
            return Ok(Vec::new());
        }
        let decisions: Vec<(String, bool)> = payload
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|action| {
                let approve = decision(str_at(action, &["action_id"])?)?;
                let item =
                    string_at(action, &["value"]).or_else(|| string_at(action, &["block_id"]))?;
                Some((item, approve))
            })
            .collect();
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        let user =
            string_at(&payload, &["user", "id"]).ok_or_else(|| missing("payload.user.id"))?;
        Ok(decisions
            .into_iter()
            .map(|(item_id, approve)| InboundEvent::ApprovalDecision {
                item_id,
                approve,
                user: user.clone(),
            })
            .collect())
    }
}

fn is_json(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// `event_id` of an Events API callback, or `trigger_id` of an interaction or command.
fn delivery_id(body: &[u8]) -> Option<String> {
    if is_json(body) {
        return parse_json(body)
            .ok()
            .and_then(|root| string_at(&root, &["event_id"]));
    }
    let pairs = form_pairs(body);
    if let Some(payload) = form_value(&pairs, "payload") {
        let payload = parse_json(payload.as_bytes()).ok()?;
        return string_at(&payload, &["trigger_id"]);
    }
    form_value(&pairs, "trigger_id")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// `Some(true)` for approve buttons, `Some(false)` for reject buttons.
fn decision(action_id: &str) -> Option<bool> {
    [(APPROVE_ACTION_ID, true), (REJECT_ACTION_ID, false)]
        .into_iter()
        .find_map(|(prefix, approve)| {
            let rest = action_id.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with([':', '_', '-', '.'])).then_some(approve)
        })
}
