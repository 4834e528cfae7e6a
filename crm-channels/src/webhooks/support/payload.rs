//! Shared helpers for reading verified payloads and logging them redacted.

use chrono::{DateTime, Utc};
use crm_core::WebhookError;
use serde_json::Value;

use crate::webhooks::redact;

/// Parses a verified body as JSON.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body)
        .map_err(|e| WebhookError::MalformedPayload(format!("body is not JSON: {e}")))
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order, keeping
/// repeated keys. Invalid UTF-8 is replaced, never an error.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key` among form pairs.
pub(crate) fn form_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The string at `path` (object keys) inside `value`.
pub(crate) fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_str()
}

/// A non-empty string at `path`, owned.
pub(crate) fn string_at(value: &Value, path: &[&str]) -> Option<String> {
    str_at(value, path)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// An RFC 3339 instant at `path`.
pub(crate) fn time_at(value: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    str_at(value, path)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `"Name <a@b.c>"` → `"a@b.c"`; anything else is returned trimmed.
pub(crate) fn bare_address(text: &str) -> String {
    let trimmed = text.trim();
    match (trimmed.rfind('<'), trimmed.rfind('>')) {
        (Some(open), Some(close)) if open < close => trimmed
            .get(open + 1..close)
            .unwrap_or(trimmed)
            .trim()
            .to_owned(),
        _ => trimmed.to_owned(),
    }
}

/// A missing-field error for `provider`'s payload.
pub(crate) fn missing(field: &str) -> WebhookError {
    WebhookError::MalformedPayload(format!("missing field {field}"))
}

/// Logs a verified raw payload at `DEBUG`, with emails and phone numbers redacted.
pub(crate) fn log_body(provider: &'static str, body: &[u8]) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(provider, payload = %redact::redact_bytes(body), "verified webhook payload");
    }
}

/// Logs verified form pairs (decoded, so encoded `+` and `@` are caught) at `DEBUG`,
/// with emails and phone numbers redacted.
pub(crate) fn log_form(provider: &'static str, pairs: &[(String, String)]) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        tracing::debug!(provider, payload = %redact::redact_bytes(text.as_bytes()), "verified webhook payload");
    }
}
