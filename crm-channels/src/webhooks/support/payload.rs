//! Shared helpers for reading verified payloads and logging them redacted.

use chrono::{DateTime, Utc};
use crm_core::WebhookError;
use serde_json::Value;

use crate::webhooks::redact;

/// Parses a verified body as JSON. An escaped NUL (`\u0000`, which no store can keep)
/// in any key or string is replaced by U+FFFD, as intake does, before any event is
/// built from it.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::MalformedPayload(format!("body is not JSON: {e}")))?;
    replace_nul(&mut value);
    Ok(value)
}

/// The replacement of U+0000 in webhook text, as in intake.
const NUL_REPLACEMENT: &str = "\u{FFFD}";

fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', NUL_REPLACEMENT)
    } else {
        text
    }
}

/// Replaces every NUL in the keys and strings of `value`, in place.
fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', NUL_REPLACEMENT),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                *map = old.into_iter().map(|(k, v)| (without_nul(k), v)).collect();
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

/// The exact text of the JSON number at `path` (object keys) of a JSON `body`, as
/// sent: never through `f64`, so `123456789012345678901234567890` stays itself.
/// `None` when the body is not JSON or the value there is not a number.
pub(crate) fn number_text_at(body: &[u8], path: &[&str]) -> Option<String> {
    let mut raw: &serde_json::value::RawValue = serde_json::from_slice(body).ok()?;
    for key in path {
        let object: std::collections::HashMap<
            std::borrow::Cow<'_, str>,
            &serde_json::value::RawValue,
        > = serde_json::from_str(raw.get()).ok()?;
        raw = object.get(*key)?;
    }
    let text = raw.get();
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        .then(|| text.to_owned())
}

/// The top-level members of a JSON object `body` that are strings, numbers or
/// booleans, as text: strings with NUL replaced, numbers exactly as sent (never
/// through `f64`). Empty when the body is not an object.
pub(crate) fn scalar_members(body: &[u8]) -> Vec<(String, String)> {
    let Ok(object) = serde_json::from_slice::<
        std::collections::BTreeMap<String, &serde_json::value::RawValue>,
    >(body) else {
        return Vec::new();
    };
    object
        .into_iter()
        .filter_map(|(key, raw)| {
            let text = raw.get();
            let value = match text.as_bytes().first()? {
                b'"' => serde_json::from_str::<String>(text).ok().map(without_nul)?,
                b'-' | b'0'..=b'9' | b't' | b'f' => text.to_owned(),
                _ => return None,
            };
            Some((without_nul(key), value))
        })
        .collect()
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order, keeping
/// repeated keys. Invalid UTF-8 is replaced, never an error. NULs are kept: this is what
/// signatures are computed over; events are built from [`form_fields`].
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// [`form_pairs`] with every NUL (`%00`) replaced by U+FFFD, as in JSON bodies: what
/// events are built from.
pub(crate) fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_pairs(body)
        .into_iter()
        .map(|(k, v)| (without_nul(k), without_nul(v)))
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
