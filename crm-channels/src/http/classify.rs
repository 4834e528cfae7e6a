//! Classification: transport failures, HTTP statuses and provider error bodies to the
//! core error kinds.

use std::fmt;
use std::time::Duration;

use ::http::StatusCode;
use crm_core::enrichment_provider::EnrichmentError;
use crm_core::{BoxError, ChannelError};

use super::redact;

/// What went wrong below HTTP: no status code was received (or the answer was unusable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The request or connection timed out.
    Timeout,
    /// No connection could be made (refused, reset, DNS).
    Connect,
    /// The request could not be built (a bad header value, for example). Our bug, not
    /// the provider's; retrying does not help.
    Builder,
    /// The provider answered with a redirect, which provider clients do not follow.
    Redirect,
    /// The response body could not be read.
    Body,
    /// The response was larger than [`super::MAX_RESPONSE_BYTES`].
    TooLarge,
    /// Any other failure while sending.
    Request,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::Connect => "connection failure",
            Self::Builder => "invalid request",
            Self::Redirect => "unexpected redirect",
            Self::Body => "unreadable response body",
            Self::TooLarge => "oversized response",
            Self::Request => "request failure",
        })
    }
}

/// A failure below HTTP. Its source is the `reqwest::Error` with the URL removed.
#[derive(Debug, thiserror::Error)]
#[error("{kind} while calling {provider}")]
pub struct TransportError {
    provider: &'static str,
    kind: TransportErrorKind,
    #[source]
    source: Option<BoxError>,
}

impl TransportError {
    /// A response larger than [`super::MAX_RESPONSE_BYTES`].
    pub(super) fn too_large(provider: &'static str) -> Self {
        Self {
            provider,
            kind: TransportErrorKind::TooLarge,
            source: None,
        }
    }

    /// The provider being called.
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// As a channel error: a bad request we built is permanent, everything else
    /// (timeouts, refused connections, broken bodies) is retryable.
    #[must_use]
    pub fn into_channel_error(self) -> ChannelError {
        let provider = self.provider;
        let reason = self.kind.to_string();
        match self.kind {
            TransportErrorKind::Builder | TransportErrorKind::Redirect => {
                ChannelError::Permanent { provider, reason }
            }
            _ => ChannelError::Retryable {
                provider,
                reason,
                retry_after: None,
                source: Some(Box::new(self)),
            },
        }
    }

    /// As an enrichment error, classified like [`TransportError::into_channel_error`].
    #[must_use]
    pub fn into_enrichment_error(self) -> EnrichmentError {
        let provider = self.provider;
        let reason = self.kind.to_string();
        match self.kind {
            TransportErrorKind::Builder | TransportErrorKind::Redirect => {
                EnrichmentError::Permanent { provider, reason }
            }
            _ => EnrichmentError::Retryable {
                provider,
                reason,
                source: Some(Box::new(self)),
            },
        }
    }
}

/// Classifies a `reqwest::Error` and strips its URL (which may carry an API key in the
/// query string). Walks the source chain for I/O errors that `reqwest` does not flag.
#[must_use]
pub fn map_reqwest_error(provider: &'static str, error: reqwest::Error) -> TransportError {
    let error = error.without_url();
    let io_kind = std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    use std::io::ErrorKind as Io;
    let kind = if error.is_builder() {
        TransportErrorKind::Builder
    } else if error.is_timeout() || io_kind == Some(Io::TimedOut) {
        TransportErrorKind::Timeout
    } else if error.is_connect()
        || matches!(
            io_kind,
            Some(
                Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::NotConnected
                    | Io::AddrNotAvailable
                    | Io::BrokenPipe
            )
        )
    {
        TransportErrorKind::Connect
    } else if error.is_redirect() {
        TransportErrorKind::Redirect
    } else if error.is_body() || error.is_decode() {
        TransportErrorKind::Body
    } else {
        TransportErrorKind::Request
    };
    TransportError {
        provider,
        kind,
        source: Some(Box::new(error)),
    }
}

/// The channel error an HTTP status means, with no provider-specific knowledge:
/// 429 → `RateLimited`; 401/403 → `Auth`; 408 and 5xx → `Retryable`; every other
/// status → `Permanent`. `retry_after` is kept for the retryable classes.
#[must_use]
pub fn classify_status(
    provider: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
) -> ChannelError {
    classify_with_reason(provider, status, retry_after, format!("HTTP {status}"))
}

pub(super) fn classify_with_reason(
    provider: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
    reason: String,
) -> ChannelError {
    match status.as_u16() {
        429 => ChannelError::RateLimited {
            provider,
            retry_after,
        },
        401 | 403 => ChannelError::Auth { provider, reason },
        408 | 500..=599 => ChannelError::Retryable {
            provider,
            reason,
            retry_after,
            source: None,
        },
        _ => ChannelError::Permanent { provider, reason },
    }
}

/// The enrichment error an HTTP status means: 429 → `RateLimited`; 401/403 → `Auth`;
/// 402 → `QuotaExhausted`; 408 and 5xx → `Retryable`; others → `Permanent`.
#[must_use]
pub fn classify_enrichment_status(
    provider: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
) -> EnrichmentError {
    match status.as_u16() {
        429 => EnrichmentError::RateLimited {
            provider,
            retry_after,
        },
        401 | 403 => EnrichmentError::Auth { provider },
        402 => EnrichmentError::QuotaExhausted { provider },
        408 | 500..=599 => EnrichmentError::Retryable {
            provider,
            reason: format!("HTTP {status}"),
            source: None,
        },
        _ => EnrichmentError::Permanent {
            provider,
            reason: format!("HTTP {status}"),
        },
    }
}

/// The interesting part of a provider's error body, whatever its shape:
/// `{"message","name"}` (Resend), `{"code","message"}` (Twilio),
/// `{"error":{"code","message","error_subcode"}}` (Meta, Cal.com, Clearbit),
/// `{"ok":false,"error":"..."}` (Slack, ZeroBounce), `{"errors":[{"id","details"}]}`
/// (Hunter), or plain text (Apollo's 401).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The machine-readable code (`"validation_error"`, `"21211"`, `"channel_not_found"`).
    pub code: Option<String>,
    /// The human-readable message, redacted of addresses and phone numbers.
    pub message: Option<String>,
    /// A secondary numeric code (Meta's `error_subcode`).
    pub subcode: Option<i64>,
}

/// At most this many characters of a provider message end up in an error.
const MAX_MESSAGE_CHARS: usize = 200;

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Array(items) => items.first().and_then(scalar_text),
        _ => None,
    }
}

/// Provider text fit for an error: addresses and phone numbers masked first (also when
/// percent-encoded or JSON-escaped), then cut to [`MAX_MESSAGE_CHARS`]. Masking the
/// whole text before cutting means a cut can never leave half an address that no longer
/// looks like one.
fn clean_message(text: &str) -> String {
    let masked = redact(text.trim());
    let mut chars = masked.chars();
    let mut shortened: String = chars.by_ref().take(MAX_MESSAGE_CHARS).collect();
    if chars.next().is_some() {
        shortened.push_str("...");
    }
    shortened
}

impl ErrorDetail {
    /// Reads an error body. Never fails: an unreadable body gives an empty detail.
    #[must_use]
    pub fn from_body(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let message = (!text.trim().is_empty()).then(|| clean_message(&text));
            return Self {
                message,
                ..Self::default()
            };
        };
        let object = match (value.get("error"), value.get("errors")) {
            (Some(inner @ serde_json::Value::Object(_)), _) => inner,
            (_, Some(serde_json::Value::Array(list))) if !list.is_empty() => &list[0],
            _ => &value,
        };
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| object.get(*n).and_then(scalar_text))
        };
        let code = field(&["name", "id", "code", "type"])
            .or_else(|| value.get("error").and_then(scalar_text))
            .map(|c| clean_message(&c));
        let message = field(&["message", "details", "error_description"])
            .or_else(|| value.get("error").and_then(scalar_text))
            .map(|m| clean_message(&m));
        let subcode = object
            .get("error_subcode")
            .and_then(serde_json::Value::as_i64);
        Self {
            code,
            message,
            subcode,
        }
    }

    /// Whether the code is `code`.
    #[must_use]
    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// `"code: message"` (whichever parts exist), for an error's reason.
    #[must_use]
    pub fn summary(&self) -> String {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) if c != m => format!("{c}: {m}"),
            (Some(c), _) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_core_kinds() {
        use crm_core::ChannelErrorKind as K;
        let wait = Some(Duration::from_secs(3));
        let kind = |s: u16| classify_status("p", StatusCode::from_u16(s).unwrap(), wait).kind();
        assert_eq!(kind(429), K::RateLimited);
        assert_eq!(kind(401), K::Auth);
        assert_eq!(kind(403), K::Auth);
        assert_eq!(kind(500), K::Retryable);
        assert_eq!(kind(503), K::Retryable);
        assert_eq!(kind(408), K::Retryable);
        assert_eq!(kind(400), K::Permanent);
        assert_eq!(kind(404), K::Permanent);
        assert_eq!(kind(422), K::Permanent);
        assert_eq!(
            classify_status("p", StatusCode::TOO_MANY_REQUESTS, wait).retry_after(),
            wait
        );
    }

    #[test]
    fn enrichment_statuses_map_to_core_kinds() {
        let e = |s: u16| classify_enrichment_status("p", StatusCode::from_u16(s).unwrap(), None);
        assert!(matches!(e(402), EnrichmentError::QuotaExhausted { .. }));
        assert!(matches!(e(401), EnrichmentError::Auth { .. }));
        assert!(e(429).is_retryable());
        assert!(e(502).is_retryable());
        assert!(!e(400).is_retryable());
    }

    #[test]
    fn error_bodies_of_every_shape_are_read() {
        let d = ErrorDetail::from_body(
            br#"{"statusCode":422,"message":"Invalid `to` field","name":"validation_error"}"#,
        );
        assert_eq!(d.code.as_deref(), Some("validation_error"));
        let d = ErrorDetail::from_body(
            br#"{"code":21211,"message":"The 'To' number +15551234567 is not valid","status":400}"#,
        );
        assert_eq!(d.code.as_deref(), Some("21211"));
        assert!(!d.message.unwrap().contains("5551234567"));
        let d = ErrorDetail::from_body(
            br#"{"error":{"message":"x","type":"OAuthException","code":100,"error_subcode":2018001}}"#,
        );
        assert_eq!((d.code.as_deref(), d.subcode), (Some("100"), Some(2018001)));
        let d = ErrorDetail::from_body(br#"{"ok":false,"error":"channel_not_found"}"#);
        assert!(d.code_is("channel_not_found"));
        let d = ErrorDetail::from_body(
            br#"{"errors":[{"id":"wrong_params","code":400,"details":"bad"}]}"#,
        );
        assert_eq!(d.summary(), "wrong_params: bad");
        let d = ErrorDetail::from_body(b"Invalid API key. Contact ada@example.com");
        assert!(!d.message.unwrap().contains("ada@"));
    }

    #[test]
    fn an_address_at_the_cut_is_masked_before_it() {
        // Cutting first would leave "jane.doe@exam": no dot in the domain, so the
        // address would no longer look like one and would stay visible.
        let text = format!("{} jane.doe@example.com rejected", "x".repeat(186));
        for body in [
            text.clone().into_bytes(),
            serde_json::json!({ "message": text })
                .to_string()
                .into_bytes(),
        ] {
            let message = ErrorDetail::from_body(&body).message.unwrap();
            assert!(!message.contains("jane"), "{message}");
            assert!(!message.contains("@exam"), "{message}");
            assert!(
                message.chars().count() <= MAX_MESSAGE_CHARS + 3,
                "{message}"
            );
            assert!(message.ends_with("..."), "{message}");
        }
    }

    #[test]
    fn escaped_addresses_in_error_bodies_are_masked() {
        for body in [
            &br#"{"message":"recipient jane%40example.com is not allowed"}"#[..],
            br#"{"message":"recipient jane\u0040example.com is not allowed"}"#,
            br#"{"message":"recipient jane\\u0040example.com is not allowed"}"#,
            br#"{"message":"recipient jane\u0040example.com is not allowed""#,
            b"recipient jane%40example.com is not allowed",
            br#"{"error":"jane@example.com","message":"x"}"#,
        ] {
            let detail = ErrorDetail::from_body(body);
            let summary = detail.summary();
            assert!(!summary.contains("jane"), "{summary}");
        }
    }
}
