//! Standard Webhooks signature verification, which Svix (and so Resend) also uses.
//!
//! Headers `webhook-id`, `webhook-timestamp`, `webhook-signature`, or the same with the
//! `svix-` prefix. The signed content is `{id}.{timestamp}.{raw body}`, HMAC-SHA256 with
//! the base64-decoded secret (after an optional `whsec_` prefix; padded or unpadded
//! base64). The signature header is a space-separated list of `<version>,<base64>`
//! entries: any matching `v1` entry passes (secret rotation), other versions are ignored.
//! The timestamp must be within the tolerance (default 5 minutes) in both directions.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{UnverifiedWebhook, VerifiedWebhook, WebhookError};
use hmac::Mac;
use secrecy::SecretSlice;

use super::WebhookConfig;
use super::crypto::{
    BASE64_LENIENT, check_body_size, check_header_id, check_tolerance, ct_eq, first_header,
    hmac_sha256, parse_unix_seconds,
};

/// Id header names, in the order they are looked up.
pub const ID_HEADERS: [&str; 2] = ["webhook-id", "svix-id"];
/// Timestamp header names, in the order they are looked up.
pub const TIMESTAMP_HEADERS: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
/// Signature header names, in the order they are looked up.
pub const SIGNATURE_HEADERS: [&str; 2] = ["webhook-signature", "svix-signature"];
/// The prefix of serialized secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// The default tolerance, in seconds, of the reference libraries.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// Verifies Standard Webhooks / Svix `v1` signatures.
pub struct StandardWebhookVerifier {
    key: SecretSlice<u8>,
    tolerance: Duration,
    max_body: usize,
}

impl StandardWebhookVerifier {
    /// A verifier for `secret` (`whsec_<base64>` or bare base64, padding optional).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the secret is empty, just the prefix, or not
    /// base64.
    pub fn new(secret: &SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        let raw = secret.expose_secret().trim();
        let encoded = raw.strip_prefix(SECRET_PREFIX).unwrap_or(raw);
        if encoded.is_empty() {
            return Err(WebhookError::InvalidSecret(
                "the secret is empty".to_owned(),
            ));
        }
        let key = BASE64_LENIENT
            .decode(encoded)
            .map_err(|_| WebhookError::InvalidSecret("the secret is not base64".to_owned()))?;
        if key.is_empty() {
            return Err(WebhookError::InvalidSecret(
                "the secret is empty".to_owned(),
            ));
        }
        Ok(Self {
            key: SecretSlice::from(key),
            tolerance: config.tolerance_or(Duration::seconds(DEFAULT_TOLERANCE_SECS)),
            max_body: config.max_body_bytes(),
        })
    }

    /// The timestamp tolerance in use.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The `v1,<base64>` signature of a message, as a sender would put it in the
    /// signature header.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] if the key cannot key an HMAC (never for HMAC).
    pub fn sign(
        &self,
        msg_id: &str,
        timestamp: i64,
        payload: &[u8],
    ) -> Result<String, WebhookError> {
        let tag = self.tag(msg_id, &timestamp.to_string(), payload)?;
        Ok(format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        ))
    }

    fn tag(&self, msg_id: &str, timestamp: &str, payload: &[u8]) -> Result<Vec<u8>, WebhookError> {
        let mac = hmac_sha256(
            self.key.expose_secret(),
            &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", payload],
        )?;
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// Verifies `request` at `now`; the delivery id is the message id.
    ///
    /// # Errors
    /// `TooLarge` for a body over the configured limit (checked first),
    /// `MissingHeader` / `MalformedHeader` for absent or unreadable headers (an id
    /// longer than [`MAX_DELIVERY_ID_BYTES`](crm_core::MAX_DELIVERY_ID_BYTES) is
    /// malformed), `TimestampOutOfTolerance`, or `InvalidSignature` when no `v1` entry
    /// matches.
    pub fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let request = unverified.request();
        check_body_size(request, self.max_body)?;
        let msg_id = first_header(request, &ID_HEADERS)?;
        let timestamp = first_header(request, &TIMESTAMP_HEADERS)?;
        let signatures = first_header(request, &SIGNATURE_HEADERS)?;
        if msg_id.is_empty() {
            return Err(WebhookError::MalformedHeader {
                header: ID_HEADERS[0],
                reason: "empty".to_owned(),
            });
        }
        check_header_id(ID_HEADERS[0], msg_id)?;
        let seconds = parse_unix_seconds(TIMESTAMP_HEADERS[0], timestamp)?;
        check_tolerance(seconds, now, self.tolerance)?;
        let expected = self.tag(msg_id, timestamp, &request.body)?;
        let mut matched = false;
        for entry in signatures.split_ascii_whitespace() {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            if let Ok(candidate) = BASE64_LENIENT.decode(encoded) {
                matched |= ct_eq(&expected, &candidate);
            }
        }
        if !matched {
            return Err(WebhookError::InvalidSignature);
        }
        Ok(unverified.accept(Some(msg_id.to_owned())))
    }
}

impl fmt::Debug for StandardWebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhookVerifier")
            .field("key", &"[redacted]")
            .field("tolerance", &self.tolerance)
            .field("max_body", &self.max_body)
            .finish()
    }
}
