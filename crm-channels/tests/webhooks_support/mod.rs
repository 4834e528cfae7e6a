//! Helpers shared by the webhook test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use crm_core::WebhookRequest;
use crm_core::secret::SecretString;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A request with the given headers and body.
pub(crate) fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    WebhookRequest {
        method,
        url: url.to_owned(),
        headers: map,
        body: body.to_vec(),
    }
}

/// A POST to a fixed URL.
pub(crate) fn post(headers: &[(&str, &str)], body: &[u8]) -> WebhookRequest {
    request(Method::POST, "https://crm.example.com/hooks", headers, body)
}

/// The instant `seconds` after the epoch.
pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// A secret from text.
pub(crate) fn secret(text: &str) -> SecretString {
    SecretString::from(text)
}

/// `body` with its last byte changed.
pub(crate) fn tampered(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    match out.last_mut() {
        Some(last) => *last ^= 1,
        None => out.push(b'x'),
    }
    out
}
