//! Shared input decoding for the webhook fuzz targets.
//!
//! Input layout: 8 bytes of clock (unix seconds, little endian), then NUL-separated
//! fields: the URL, one value per header name the target reads, and the body (the rest).

use chrono::{DateTime, Utc};
use crm_core::{
    InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError, WebhookRequest,
    verify_webhook,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Decodes fuzz input into a request for a verifier reading `headers`, and a clock.
pub fn decode(data: &[u8], headers: &[&'static str]) -> (WebhookRequest, DateTime<Utc>) {
    let (clock, rest) = data.split_at(data.len().min(8));
    let mut seconds = [0u8; 8];
    seconds[..clock.len()].copy_from_slice(clock);
    let seconds = i64::from_le_bytes(seconds) % 100_000_000_000;
    let now = DateTime::from_timestamp(seconds, 0).unwrap_or_default();

    let mut fields = rest.splitn(headers.len() + 2, |b| *b == 0);
    let url = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let mut map = HeaderMap::new();
    for name in headers {
        if let Some(value) = fields.next()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            map.append(HeaderName::from_static(name), value);
        }
    }
    let body = fields.next().unwrap_or_default().to_vec();
    let request = WebhookRequest {
        method: Method::POST,
        url,
        headers: map,
        body,
    };
    (request, now)
}

/// Runs `verify` and, whether or not it passed, `parse` on the decoded request.
pub fn exercise(hook: &dyn InboundWebhook, data: &[u8], headers: &[&'static str]) {
    let (request, now) = decode(data, headers);
    if let Ok(verified) = verify_webhook(hook, &request, now) {
        let _ = hook.parse(&verified);
    }
    if let Ok(unchecked) = verify_webhook(&AcceptAll, &request, now) {
        let _ = hook.parse(&unchecked);
    }
}

/// Accepts every request, so that parsers are fuzzed on unsigned input too.
#[derive(Debug)]
struct AcceptAll;

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
