//! Shared verification primitives: HMAC, constant-time comparison, decoding, header access
//! and timestamp tolerance. Written once, used by every provider module.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Duration, Utc};
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{MAX_DELIVERY_ID_BYTES, WebhookError, WebhookRequest};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// HMAC-SHA256.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Standard base64 alphabet; decoding accepts padded and unpadded input.
pub(crate) const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An HMAC-SHA256 state keyed with `key` that has absorbed every part in order.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<HmacSha256, WebhookError> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|_| WebhookError::InvalidSecret("HMAC key rejected".to_owned()))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac)
}

/// Whether `candidate_hex` (either case) is the tag of `mac`, compared in constant time.
/// Anything that is not hex of the right length simply does not match.
pub(crate) fn mac_matches_hex(mac: &HmacSha256, candidate_hex: &str) -> bool {
    match hex::decode(candidate_hex.trim()) {
        Ok(tag) => mac.clone().verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// Constant-time equality. Lengths are not secret (every tag has a fixed length), so
/// unequal lengths return `false` at once.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time equality that does not reveal the length either: both sides are hashed
/// first. For comparing shared tokens such as Meta's `hub.verify_token`.
pub(crate) fn ct_eq_hashed(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(ha.as_slice().ct_eq(hb.as_slice()))
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Refuses an empty (or all-whitespace) configured secret.
pub(crate) fn require_secret(secret: &SecretString) -> Result<(), WebhookError> {
    if secret.expose_secret().trim().is_empty() {
        return Err(WebhookError::InvalidSecret(
            "the secret is empty".to_owned(),
        ));
    }
    Ok(())
}

/// A header that may be absent; present but not valid text is malformed.
pub(crate) fn optional_header<'r>(
    request: &'r WebhookRequest,
    name: &'static str,
) -> Result<Option<&'r str>, WebhookError> {
    match request.headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|text| Some(text.trim())).map_err(|_| {
            WebhookError::MalformedHeader {
                header: name,
                reason: "not visible ASCII".to_owned(),
            }
        }),
    }
}

/// A header that must be present.
pub(crate) fn required_header<'r>(
    request: &'r WebhookRequest,
    name: &'static str,
) -> Result<&'r str, WebhookError> {
    optional_header(request, name)?.ok_or(WebhookError::MissingHeader(name))
}

/// Refuses a body larger than `limit` bytes; the first check of every verifier.
pub(crate) fn check_body_size(request: &WebhookRequest, limit: usize) -> Result<(), WebhookError> {
    let size = request.body.len();
    if size > limit {
        return Err(WebhookError::TooLarge { size, limit });
    }
    Ok(())
}

/// Refuses a delivery id carried in `header` that is longer than
/// [`MAX_DELIVERY_ID_BYTES`]; checked before any HMAC is computed.
pub(crate) fn check_header_id(header: &'static str, id: &str) -> Result<(), WebhookError> {
    if id.len() > MAX_DELIVERY_ID_BYTES {
        return Err(WebhookError::MalformedHeader {
            header,
            reason: format!("longer than {MAX_DELIVERY_ID_BYTES} bytes"),
        });
    }
    Ok(())
}

/// A delivery id derived from a verified body, refused when longer than
/// [`MAX_DELIVERY_ID_BYTES`].
pub(crate) fn body_id(id: Option<String>) -> Result<Option<String>, WebhookError> {
    match id {
        Some(id) if id.len() > MAX_DELIVERY_ID_BYTES => Err(WebhookError::MalformedPayload(
            format!("delivery id longer than {MAX_DELIVERY_ID_BYTES} bytes"),
        )),
        id => Ok(id),
    }
}

/// Parses a unix-seconds timestamp carried in `header`.
pub(crate) fn parse_unix_seconds(header: &'static str, value: &str) -> Result<i64, WebhookError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| WebhookError::MalformedHeader {
            header,
            reason: "timestamp is not an integer number of seconds".to_owned(),
        })
}

/// Refuses a timestamp more than `tolerance` before or after `now` (both directions;
/// exactly `tolerance` away still passes).
pub(crate) fn check_tolerance(
    timestamp: i64,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let diff = i128::from(now.timestamp()) - i128::from(timestamp);
    let allowed = i128::from(tolerance.num_seconds().max(0));
    if diff > allowed || -diff > allowed {
        return Err(WebhookError::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Verifies a lowercase-hex HMAC-SHA256 of the raw body (the Meta and Cal.com schemes).
pub(crate) fn verify_body_hex(
    secret: &SecretString,
    body: &[u8],
    signature_hex: &str,
) -> Result<(), WebhookError> {
    let mac = hmac_sha256(secret.expose_secret().as_bytes(), &[body])?;
    if mac_matches_hex(&mac, signature_hex) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_inclusive_in_both_directions() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        let five = Duration::minutes(5);
        assert!(check_tolerance(1_000_000 - 300, now, five).is_ok());
        assert!(check_tolerance(1_000_000 + 300, now, five).is_ok());
        assert!(check_tolerance(1_000_000 - 301, now, five).is_err());
        assert!(check_tolerance(1_000_000 + 301, now, five).is_err());
        assert!(check_tolerance(i64::MIN, now, five).is_err());
        assert!(check_tolerance(i64::MAX, now, five).is_err());
    }

    #[test]
    fn hashed_comparison() {
        assert!(ct_eq_hashed(b"token", b"token"));
        assert!(!ct_eq_hashed(b"token", b"token2"));
        assert!(!ct_eq(b"a", b"ab"));
    }
}
