//! Helpers shared by the webhook test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use crm_core::secret::SecretString;
use crm_core::{
    InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError, WebhookRequest,
};
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

/// Verification through crm-core's one entry point, [`crm_core::verify_webhook`], as a
/// host does it, written as a method.
pub(crate) trait VerifyAt: InboundWebhook {
    fn verify_at<'r>(
        &self,
        request: &'r WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        crm_core::verify_webhook(self, request, now)
    }
}

impl<T: InboundWebhook + ?Sized> VerifyAt for T {}

/// A verifier that accepts every request, for tests that feed unsigned payloads to a
/// parser. A `VerifiedWebhook` can only come from some verifier; this is that verifier.
#[derive(Debug)]
pub(crate) struct AcceptAll;

impl InboundWebhook for AcceptAll {
    fn provider(&self) -> &'static str {
        "accept-all"
    }

    fn verify<'r>(
        &self,
        request: UnverifiedWebhook<'r>,
        _now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        Ok(request.accept(None))
    }

    fn parse(&self, _webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        Ok(Vec::new())
    }
}

/// `request` marked verified without a signature check (see [`AcceptAll`]).
pub(crate) fn unchecked(request: &WebhookRequest) -> VerifiedWebhook<'_> {
    AcceptAll.verify_at(request, at(0)).unwrap()
}
