//! The 24-hour customer-service window of WhatsApp and Instagram messaging, and the
//! [`OutboundMessage::metadata`] fields adapters read.
//!
//! Both platforms allow a free-form message only within 24 hours of the person's last
//! inbound message. The dispatcher knows nothing about that window, so the host puts
//! the time of the last inbound message into the message metadata:
//!
//! ```json
//! { "last_inbound_at": "2024-05-01T09:30:00Z" }
//! ```
//!
//! Adapters then decide before any network call (see [`WindowCheck`]).

use chrono::{DateTime, Duration, Utc};
use crm_core::{ChannelError, OutboundMessage};

/// The metadata field holding the last inbound message time (RFC 3339).
pub const LAST_INBOUND_AT: &str = "last_inbound_at";

/// The length of the customer-service window.
pub const CUSTOMER_SERVICE_WINDOW: Duration = Duration::hours(24);

/// A text field of the message metadata, if present and non-blank.
#[must_use]
pub fn metadata_str<'m>(message: &'m OutboundMessage, key: &str) -> Option<&'m str> {
    message
        .metadata
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The `last_inbound_at` metadata field. A present but unreadable value is a permanent
/// error (the host sent bad data; guessing could break the platform's policy).
pub fn last_inbound_at(
    provider: &'static str,
    message: &OutboundMessage,
) -> Result<Option<DateTime<Utc>>, ChannelError> {
    let Some(value) = message.metadata.get(LAST_INBOUND_AT) else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| Some(t.with_timezone(&Utc)))
        .ok_or_else(|| ChannelError::Permanent {
            provider,
            reason: format!("metadata.{LAST_INBOUND_AT} must be an RFC 3339 time"),
        })
}

/// Where a message stands relative to a conversation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowCheck {
    /// The person wrote within the window: free-form messages are allowed.
    Open,
    /// No inbound message is known, or the last one is older than the window.
    Closed,
}

impl WindowCheck {
    /// Whether the person's last message at `last_inbound` (if any) is within `window`
    /// of `now`. A time in the future (clock skew) counts as open.
    #[must_use]
    pub fn of(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>, window: Duration) -> Self {
        match last_inbound {
            Some(at) if now - at <= window => Self::Open,
            _ => Self::Closed,
        }
    }

    /// Whether free-form messages are allowed.
    #[must_use]
    pub fn is_open(self) -> bool {
        self == Self::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_window_is_24_hours() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let w = CUSTOMER_SERVICE_WINDOW;
        assert!(WindowCheck::of(Some(now - Duration::hours(23)), now, w).is_open());
        assert!(WindowCheck::of(Some(now - Duration::hours(24)), now, w).is_open());
        assert!(!WindowCheck::of(Some(now - Duration::hours(25)), now, w).is_open());
        assert!(!WindowCheck::of(None, now, w).is_open());
    }
}
