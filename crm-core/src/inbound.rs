//! Inbound webhooks: verify a raw request, then parse it into events.

use std::fmt::{self, Debug};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Channel;
use crate::redact::{MaskedAddress, MaskedBytes, masked_opt};

/// A raw inbound HTTP request, exactly as received.
///
/// Its `Debug` shows the method, the URL without its query, the header names and the
/// body's length: header values carry signatures and the body personal data.
#[derive(Clone)]
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

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        let header_names: Vec<&str> = self.headers.keys().map(http::HeaderName::as_str).collect();
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("url", &path)
            .field("headers", &header_names)
            .field("body", &MaskedBytes(&self.body))
            .finish()
    }
}

impl WebhookRequest {
    /// A header as text, if present and valid UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request on its way through [`InboundWebhook::verify`]: the only value from which a
/// [`VerifiedWebhook`] can be made.
///
/// Only crm-core creates one, in [`verify_webhook`], and hands it to the verifier. The
/// verifier reads the request, checks its signature, and on success turns this value
/// into the proof with [`UnverifiedWebhook::accept`]. Because the value is bound to one
/// request (and its lifetime), a verifier cannot mark any other request as verified,
/// and code that holds no `UnverifiedWebhook` cannot make a [`VerifiedWebhook`] at all.
/// It is neither `Clone` nor `Copy`: accepting consumes it.
#[derive(Debug)]
pub struct UnverifiedWebhook<'r> {
    request: &'r WebhookRequest,
}

impl<'r> UnverifiedWebhook<'r> {
    /// The request to check.
    #[must_use]
    pub fn request(&self) -> &'r WebhookRequest {
        self.request
    }

    /// A header of the request as text, if present and valid UTF-8.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'r str> {
        self.request.header(name)
    }

    /// Marks the request as verified. Call this only after its signature (and, where the
    /// scheme has one, its timestamp) checked out. `delivery_id` is the provider's id of
    /// this delivery, stable across retries, when the scheme has one.
    #[must_use]
    pub fn accept(self, delivery_id: Option<String>) -> VerifiedWebhook<'r> {
        VerifiedWebhook {
            request: self.request,
            delivery_id,
        }
    }
}

/// Proof that a request passed verification.
///
/// It has no public constructor: the only way to get one is [`verify_webhook`], which
/// runs a verifier's [`InboundWebhook::verify`], and the verifier makes it from the
/// [`UnverifiedWebhook`] it was given. `parse` takes one, so nothing is parsed that no
/// verifier accepted.
///
/// Outside crm-core neither value can be built by hand:
///
/// ```compile_fail
/// # use crm_core::{UnverifiedWebhook, WebhookRequest};
/// fn forge(request: &WebhookRequest) -> UnverifiedWebhook<'_> {
///     UnverifiedWebhook { request }
/// }
/// ```
///
/// ```compile_fail
/// # use crm_core::{VerifiedWebhook, WebhookRequest};
/// fn forge(request: &WebhookRequest) -> VerifiedWebhook<'_> {
///     VerifiedWebhook { request, delivery_id: None }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedWebhook<'r> {
    request: &'r WebhookRequest,
    delivery_id: Option<String>,
}

impl<'r> VerifiedWebhook<'r> {
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

/// Verifies `request` at `now` with `webhook`: the one way to obtain a
/// [`VerifiedWebhook`] for [`InboundWebhook::parse`].
///
/// # Errors
/// Whatever the verifier refused the request with.
pub fn verify_webhook<'r, W>(
    webhook: &W,
    request: &'r WebhookRequest,
    now: DateTime<Utc>,
) -> Result<VerifiedWebhook<'r>, WebhookError>
where
    W: InboundWebhook + ?Sized,
{
    webhook.verify(UnverifiedWebhook { request }, now)
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
///
/// Its `Debug` masks addresses, message text and links; channels, provider ids, booking
/// ids, statuses and times stay visible.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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

impl fmt::Debug for InboundEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply {
                channel,
                from,
                text,
                in_reply_to,
            } => f
                .debug_struct("Reply")
                .field("channel", channel)
                .field("from", &MaskedAddress(from))
                .field("text", &masked_opt(text.as_deref()))
                .field("in_reply_to", in_reply_to)
                .finish(),
            Self::Delivered {
                channel,
                provider_message_id,
            } => f
                .debug_struct("Delivered")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .finish(),
            Self::Bounced {
                channel,
                provider_message_id,
                address,
                permanent,
            } => f
                .debug_struct("Bounced")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .field("address", &MaskedAddress(address))
                .field("permanent", permanent)
                .finish(),
            Self::Complained {
                channel,
                provider_message_id,
                address,
            } => f
                .debug_struct("Complained")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .field("address", &MaskedAddress(address))
                .finish(),
            Self::Opened {
                channel,
                provider_message_id,
            } => f
                .debug_struct("Opened")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .finish(),
            Self::Clicked {
                channel,
                provider_message_id,
                url,
            } => f
                .debug_struct("Clicked")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .field("url", &masked_opt(url.as_deref()))
                .finish(),
            Self::Failed {
                channel,
                provider_message_id,
                reason,
            } => f
                .debug_struct("Failed")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .field("reason", &masked_opt(reason.as_deref()))
                .finish(),
            Self::Unsubscribed { channel, address } => f
                .debug_struct("Unsubscribed")
                .field("channel", channel)
                .field("address", &MaskedAddress(address))
                .finish(),
            Self::OutOfOffice {
                channel,
                address,
                return_on,
            } => f
                .debug_struct("OutOfOffice")
                .field("channel", channel)
                .field("address", &MaskedAddress(address))
                .field("return_on", return_on)
                .finish(),
            Self::MeetingBooked {
                email,
                starts_at,
                booking_id,
            } => f
                .debug_struct("MeetingBooked")
                .field("email", &MaskedAddress(email))
                .field("starts_at", starts_at)
                .field("booking_id", booking_id)
                .finish(),
            Self::MeetingCancelled { email, booking_id } => f
                .debug_struct("MeetingCancelled")
                .field("email", &MaskedAddress(email))
                .field("booking_id", booking_id)
                .finish(),
            Self::StatusChanged {
                channel,
                provider_message_id,
                status,
            } => f
                .debug_struct("StatusChanged")
                .field("channel", channel)
                .field("provider_message_id", provider_message_id)
                .field("status", status)
                .finish(),
            Self::ApprovalDecision {
                item_id,
                approve,
                user,
            } => f
                .debug_struct("ApprovalDecision")
                .field("item_id", item_id)
                .field("approve", approve)
                .field("user", user)
                .finish(),
        }
    }
}

/// Verifies and parses one provider's inbound webhooks.
///
/// Hosts call [`verify_webhook`]`(&webhook, &request, now)` and, on success,
/// [`InboundWebhook::parse`] with the [`VerifiedWebhook`] it returned.
///
/// # Contract
/// - `verify` MUST check the signature over the raw body bytes before anything is
///   parsed, compare in constant time, and use `now` (never the system clock) for
///   timestamp tolerance.
/// - `parse` is only called with a [`VerifiedWebhook`].
///
/// # Implementing
/// `verify` receives the request as an [`UnverifiedWebhook`], a value only crm-core can
/// create. Read the request through it, check it, and return
/// [`UnverifiedWebhook::accept`] on success; that is the only constructor of
/// [`VerifiedWebhook`], so neither a caller nor a verifier can produce the proof for a
/// request that no `verify` accepted. A wrapper (deduplication, metrics) passes the
/// value on to the verifier it wraps and returns that verifier's answer. Implementing
/// this trait makes a type a verifier: one whose `verify` accepts everything turns any
/// request into a [`VerifiedWebhook`], so only register verifiers that check.
pub trait InboundWebhook: Send + Sync + Debug + 'static {
    /// Provider name, e.g. `"resend"`.
    fn provider(&self) -> &'static str;

    /// Checks the request's authenticity; see the trait docs. Callers go through
    /// [`verify_webhook`].
    fn verify<'r>(
        &self,
        request: UnverifiedWebhook<'r>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError>;

    /// Turns a verified request into events (possibly none).
    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError>;

    /// Answers the provider's subscription handshake, if `request` is one: a request
    /// that proves the endpoint is ours before any event is sent (Meta's
    /// `GET ?hub.mode=subscribe&hub.challenge=..`).
    ///
    /// `None` when the request is not a handshake (so it is verified and parsed as a
    /// delivery); `Some(Ok(body))` to answer 200 with exactly `body`; `Some(Err(_))` to
    /// refuse it. The default answers `None`: most providers have no handshake.
    fn handshake(&self, request: &WebhookRequest) -> Option<Result<String, WebhookError>> {
        let _ = request;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WebhookRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-signature",
            http::HeaderValue::from_static("sig-abcdef123456"),
        );
        WebhookRequest {
            method: http::Method::POST,
            url: "https://crm.example.com/hooks/resend?token=hook-token-987".into(),
            headers,
            body: br#"{"from":"jane.roe@example.com","text":"call me"}"#.to_vec(),
        }
    }

    /// Accepts requests carrying `x-signature: good`, with that header as delivery id.
    #[derive(Debug)]
    struct HeaderVerifier;

    impl InboundWebhook for HeaderVerifier {
        fn provider(&self) -> &'static str {
            "header"
        }

        fn verify<'r>(
            &self,
            request: UnverifiedWebhook<'r>,
            _now: DateTime<Utc>,
        ) -> Result<VerifiedWebhook<'r>, WebhookError> {
            match request.header("x-signature") {
                Some("good") => Ok(request.accept(Some("d-1".into()))),
                Some(_) => Err(WebhookError::InvalidSignature),
                None => Err(WebhookError::MissingHeader("x-signature")),
            }
        }

        fn parse(&self, _: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn only_the_verifier_decides_what_is_verified() {
        let now = DateTime::UNIX_EPOCH;
        let refused = request();
        assert_eq!(
            verify_webhook(&HeaderVerifier, &refused, now).unwrap_err(),
            WebhookError::InvalidSignature
        );
        let mut good = request();
        good.headers
            .insert("x-signature", http::HeaderValue::from_static("good"));
        let dyn_verifier: &dyn InboundWebhook = &HeaderVerifier;
        let verified = verify_webhook(dyn_verifier, &good, now).unwrap();
        assert!(std::ptr::eq(verified.request(), &good));
        assert_eq!(verified.delivery_id(), Some("d-1"));
    }

    #[test]
    fn request_debug_hides_query_header_values_and_body() {
        let debug = format!("{:?}", request());
        for secret in ["hook-token-987", "abcdef123456", "jane.roe", "call me"] {
            assert!(!debug.contains(secret), "{secret:?} leaks in {debug}");
        }
        for shown in ["/hooks/resend", "x-signature", "POST"] {
            assert!(debug.contains(shown), "{shown:?} missing in {debug}");
        }
    }

    #[test]
    fn event_debug_hides_addresses_text_and_links() {
        let events = [
            InboundEvent::Reply {
                channel: Channel::Email,
                from: "jane.roe@example.com".into(),
                text: Some("call me at home".into()),
                in_reply_to: Some("msg-42".into()),
            },
            InboundEvent::Bounced {
                channel: Channel::Sms,
                provider_message_id: Some("msg-42".into()),
                address: "+4915112345678".into(),
                permanent: true,
            },
            InboundEvent::Complained {
                channel: Channel::Email,
                provider_message_id: Some("msg-42".into()),
                address: "jane.roe@example.com".into(),
            },
            InboundEvent::Clicked {
                channel: Channel::Email,
                provider_message_id: "msg-42".into(),
                url: Some("https://example.com/reset?user=jane.roe".into()),
            },
            InboundEvent::Failed {
                channel: Channel::Email,
                provider_message_id: "msg-42".into(),
                reason: Some("mailbox jane.roe@example.com full".into()),
            },
            InboundEvent::Unsubscribed {
                channel: Channel::Email,
                address: "jane.roe@example.com".into(),
            },
            InboundEvent::OutOfOffice {
                channel: Channel::Email,
                address: "jane.roe@example.com".into(),
                return_on: None,
            },
            InboundEvent::MeetingBooked {
                email: "jane.roe@example.com".into(),
                starts_at: None,
                booking_id: Some("msg-42".into()),
            },
            InboundEvent::MeetingCancelled {
                email: "jane.roe@example.com".into(),
                booking_id: Some("msg-42".into()),
            },
        ];
        for event in events {
            let debug = format!("{event:?}");
            for secret in ["jane.roe", "151123", "at home"] {
                assert!(!debug.contains(secret), "{secret:?} leaks in {debug}");
            }
            assert!(
                debug.contains("msg-42") || debug.contains("***@example.com"),
                "neither the id nor the masked address is shown in {debug}"
            );
        }
    }
}
