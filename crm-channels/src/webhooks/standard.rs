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
use crm_core::{UnverifiedWebhook, VerifiedWebhook, WebhookError, WebhookRequest};
use hmac::{KeyInit, Mac};
use http::HeaderValue;
use secrecy::SecretSlice;

use super::WebhookConfig;
use super::crypto::{
    BASE64_LENIENT, HmacSha256, check_body_size, check_header_id, check_tolerance,
    parse_unix_seconds,
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

/// The length of a `v1` tag (HMAC-SHA256).
const TAG_LEN: usize = 32;
/// The longest base64 text of a [`TAG_LEN`]-byte tag (padded); a longer entry cannot
/// match and is not decoded.
const TAG_BASE64_LEN: usize = TAG_LEN.div_ceil(3) * 4;

/// Verifies Standard Webhooks / Svix `v1` signatures.
///
/// Built for the hot path of an inbound endpoint: the HMAC is keyed once, here, and
/// each request clones that state and feeds it the id, timestamp and body in place;
/// signatures are decoded into a stack buffer and checked with `hmac`'s constant-time
/// `verify_slice`. Verifying a request allocates only the delivery id it hands back.
pub struct StandardWebhookVerifier {
    /// The HMAC-SHA256 state after absorbing the key (as good as the key: redacted).
    keyed: HmacSha256,
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
        // Zeroed when dropped, once the HMAC is keyed.
        let key = SecretSlice::from(
            BASE64_LENIENT
                .decode(encoded)
                .map_err(|_| WebhookError::InvalidSecret("the secret is not base64".to_owned()))?,
        );
        if key.expose_secret().is_empty() {
            return Err(WebhookError::InvalidSecret(
                "the secret is empty".to_owned(),
            ));
        }
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(key.expose_secret())
            .map_err(|_| WebhookError::InvalidSecret("HMAC key rejected".to_owned()))?;
        Ok(Self {
            keyed,
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
    /// None today; the `Result` is kept for schemes whose signing can fail.
    pub fn sign(
        &self,
        msg_id: &str,
        timestamp: i64,
        payload: &[u8],
    ) -> Result<String, WebhookError> {
        let tag = self
            .mac(msg_id, &timestamp.to_string(), payload)
            .finalize()
            .into_bytes();
        Ok(format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        ))
    }

    /// The keyed HMAC after `{msg_id}.{timestamp}.{payload}`, fed in place.
    fn mac(&self, msg_id: &str, timestamp: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(payload);
        mac
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
        let [msg_id, timestamp, signatures] = headers(request)?;
        if msg_id.is_empty() {
            return Err(WebhookError::MalformedHeader {
                header: ID_HEADERS[0],
                reason: "empty".to_owned(),
            });
        }
        check_header_id(ID_HEADERS[0], msg_id)?;
        let seconds = parse_unix_seconds(TIMESTAMP_HEADERS[0], timestamp)?;
        check_tolerance(seconds, now, self.tolerance)?;
        let mac = self.mac(msg_id, timestamp, &request.body);
        let mut matched = false;
        for entry in signatures.split_ascii_whitespace() {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            if encoded.len() > TAG_BASE64_LEN {
                continue;
            }
            // One spare byte: unpadded text may decode one byte past the tag, which
            // then does not match by length.
            let mut tag = [0_u8; TAG_LEN + 1];
            if let Ok(len) = BASE64_LENIENT.decode_slice(encoded, &mut tag) {
                matched |= tag
                    .get(..len)
                    .is_some_and(|tag| mac.clone().verify_slice(tag).is_ok());
            }
        }
        if !matched {
            return Err(WebhookError::InvalidSignature);
        }
        Ok(unverified.accept(Some(msg_id.to_owned())))
    }
}

/// The id, timestamp and signature headers as trimmed text, each under the first of
/// its two names present: `MissingHeader` names the first name when neither is,
/// `MalformedHeader` the one present when its value is not visible ASCII. One pass
/// over the request's headers, instead of a hashed lookup per name (six for a Svix
/// request, whose names are the second choice).
fn headers(request: &WebhookRequest) -> Result<[&str; 3], WebhookError> {
    const GROUPS: [[&str; 2]; 3] = [ID_HEADERS, TIMESTAMP_HEADERS, SIGNATURE_HEADERS];
    // [group][alternative]: the first value of each name.
    let mut found: [[Option<&HeaderValue>; 2]; 3] = [[None; 2]; 3];
    for (name, value) in &request.headers {
        let name = name.as_str();
        for (group, names) in GROUPS.iter().enumerate() {
            for (alternative, candidate) in names.iter().enumerate() {
                if name == *candidate && found[group][alternative].is_none() {
                    found[group][alternative] = Some(value);
                }
            }
        }
    }
    let mut texts = [""; 3];
    for ((text, names), values) in texts.iter_mut().zip(GROUPS).zip(found) {
        let (header, value) = match values {
            [Some(value), _] => (names[0], value),
            [None, Some(value)] => (names[1], value),
            [None, None] => return Err(WebhookError::MissingHeader(names[0])),
        };
        *text = value
            .to_str()
            .map_err(|_| WebhookError::MalformedHeader {
                header,
                reason: "not visible ASCII".to_owned(),
            })?
            .trim();
    }
    Ok(texts)
}

impl fmt::Debug for StandardWebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhookVerifier")
            .field("keyed", &"[redacted]")
            .field("tolerance", &self.tolerance)
            .field("max_body", &self.max_body)
            .finish()
    }
}
