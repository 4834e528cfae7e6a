//! Inbound webhooks: verify a raw request, then parse it into events.

use std::fmt::Debug;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Channel;

/// A raw inbound HTTP request, exactly as received.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// HTTP method.
    pub method: http::Method,
    /// The full URL the provider called (scheme, host, port, path and query), as
    /// some schemes (Twilio) sign it.
    pub url: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The body bytes, unparsed.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// A header as text, if present and valid UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Proof that a request passed verification; only [`InboundWebhook::verify`]
/// implementations create it.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook<'r> {
    request: &'r WebhookRequest,
    delivery_id: Option<String>,
}

impl<'r> VerifiedWebhook<'r> {
    /// Marks `request` as verified. Call this only after checking its signature.
    #[must_use]
    pub fn new(request: &'r WebhookRequest, delivery_id: Option<String>) -> Self {
        Self {
            request,
            delivery_id,
        }
    }

    /// The verified request.
    #[must_use]
    pub fn request(&self) -> &'r WebhookRequest {
        self.request
    }

    /// The provider's delivery id (stable across retries), for deduplication.
    #[must_use]
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }
}

/// The longest delivery id (the provider's `webhook-id` and the like, or one derived
/// from the body), in bytes, that a verifier accepts: longer is malformed. Keeps a
/// signed but absurd id out of delivery logs and their indexes.
pub const MAX_DELIVERY_ID_BYTES: usize = 256;

/// Why a webhook was refused. Messages never include secrets or payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but malformed.
    #[error("malformed header {header}: {reason}")]
    MalformedHeader {
        /// Header name.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No signature matched.
    #[error("signature mismatch")]
    InvalidSignature,
    /// The timestamp is outside the tolerance.
    #[error("timestamp outside tolerance")]
    TimestampOutOfTolerance,
    /// The configured secret is empty or malformed.
    #[error("webhook secret is invalid: {0}")]
    InvalidSecret(String),
    /// The body could not be parsed after verification.
    #[error("malformed payload: {0}")]
    MalformedPayload(String),
    /// This delivery was already processed.
    #[error("duplicate delivery {0}")]
    Duplicate(String),
    /// The body is larger than the verifier accepts; refused before any parsing,
    /// decoding or signature computation.
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// A provider event, normalised.
///
/// Text in events never holds U+0000 (which no store can keep): parsers replace an
/// escaped NUL of a payload with U+FFFD, as intake does. Ids that a provider sends as
/// JSON numbers keep their exact text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum InboundEvent {
    /// The contact wrote back.
    Reply {
        /// Channel.
        channel: Channel,
        /// Sender address.
        from: String,
        /// Message text, if any.
        text: Option<String>,
        /// The provider's id of our message being answered, if known.
        in_reply_to: Option<String>,
    },
    /// Delivered to the recipient.
    Delivered {
        /// Channel.
        channel: Channel,
        /// Provider message id.
        provider_message_id: String,
    },
    /// Bounced.
    Bounced {
        /// Channel.
        channel: Channel,
        /// Provider message id, if known.
        provider_message_id: Option<String>,
        /// The bouncing address.
        address: String,
        /// Whether it is permanent (hard bounce).
        permanent: bool,
    },
    /// Marked as spam.
    Complained {
        /// Channel.
        channel: Channel,
        /// Provider message id, if known.
        provider_message_id: Option<String>,
        /// The complaining address.
        address: String,
    },
    /// Opened.
    Opened {
        /// Channel.
        channel: Channel,
        /// Provider message id.
        provider_message_id: String,
    },
    /// A link was clicked.
    Clicked {
        /// Channel.
        channel: Channel,
        /// Provider message id.
        provider_message_id: String,
        /// The link.
        url: Option<String>,
    },
    /// The provider failed to deliver.
    Failed {
        /// Channel.
        channel: Channel,
        /// Provider message id.
        provider_message_id: String,
        /// Why.
        reason: Option<String>,
    },
    /// The recipient opted out.
    Unsubscribed {
        /// Channel.
        channel: Channel,
        /// The address.
        address: String,
    },
    /// An automatic out-of-office answer.
    OutOfOffice {
        /// Channel.
        channel: Channel,
        /// The address.
        address: String,
        /// The announced return date, if any.
        return_on: Option<NaiveDate>,
    },
    /// A meeting was booked.
    MeetingBooked {
        /// The attendee's email.
        email: String,
        /// Start time.
        starts_at: Option<DateTime<Utc>>,
        /// Provider booking id.
        booking_id: Option<String>,
    },
    /// A meeting was cancelled.
    MeetingCancelled {
        /// The attendee's email.
        email: String,
        /// Provider booking id.
        booking_id: Option<String>,
    },
    /// A delivery status change without a dedicated variant.
    StatusChanged {
        /// Channel.
        channel: Channel,
        /// Provider message id.
        provider_message_id: String,
        /// The provider's status name.
        status: String,
    },
    /// A person decided an approval item from a chat button.
    ApprovalDecision {
        /// The approval item id, as text.
        item_id: String,
        /// Approved (`true`) or rejected.
        approve: bool,
        /// The provider's user id of whoever clicked.
        user: String,
    },
}

/// Verifies and parses one provider's inbound webhooks.
///
/// # Contract
/// - `verify` MUST check the signature over the raw body bytes before anything is
///   parsed, compare in constant time, and use `now` (never the system clock) for
///   timestamp tolerance.
/// - `parse` is only called with a [`VerifiedWebhook`].
pub trait InboundWebhook: Send + Sync + Debug + 'static {
    /// Provider name, e.g. `"resend"`.
    fn provider(&self) -> &'static str;

    /// Checks the request's authenticity.
    fn verify<'r>(
        &self,
        request: &'r WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError>;

    /// Turns a verified request into events (possibly none).
    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError>;
}
