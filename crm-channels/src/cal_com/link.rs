//! The booking-link step: a message carrying a Cal.com booking link, delivered by
//! another channel adapter.

use std::sync::Arc;

use async_trait::async_trait;
use crm_core::model::Channel;
use crm_core::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use url::Url;

use super::PROVIDER;
use crate::window::metadata_str;

/// Where the link goes in the body; without it the link is appended on its own line.
pub const BOOKING_LINK_PLACEHOLDER: &str = "{{booking_link}}";

/// Sends a booking link through a delivery adapter.
///
/// The link is the configured booking page (e.g. `https://cal.com/ada/30min`), or the
/// message's `metadata.booking_url` when set. It replaces every
/// [`BOOKING_LINK_PLACEHOLDER`] in the body, or is appended after a blank line when the
/// body has none and does not contain the link already (the sequence runner renders
/// `{{booking_link}}` itself). The message keeps its id, so the delivery adapter forwards the same
/// idempotency key; its errors are returned unchanged.
#[derive(Debug, Clone)]
pub struct CalComBookingLinkChannel {
    booking_url: Url,
    delivery: Arc<dyn ChannelAdapter>,
}

impl CalComBookingLinkChannel {
    /// Links to `booking_url`, delivered through `delivery`.
    #[must_use]
    pub fn new(booking_url: Url, delivery: Arc<dyn ChannelAdapter>) -> Self {
        Self {
            booking_url,
            delivery,
        }
    }

    /// The message `delivery` receives: the body with the link in it.
    pub fn render(&self, message: &OutboundMessage) -> Result<OutboundMessage, ChannelError> {
        let link = match metadata_str(message, "booking_url") {
            Some(custom) => Url::parse(custom)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http"))
                .ok_or_else(|| ChannelError::Permanent {
                    provider: PROVIDER,
                    reason: "metadata.booking_url is not an http(s) URL".to_owned(),
                })?,
            None => self.booking_url.clone(),
        };
        let mut rendered = message.clone();
        rendered.body = if message.body.contains(BOOKING_LINK_PLACEHOLDER) {
            message
                .body
                .replace(BOOKING_LINK_PLACEHOLDER, link.as_str())
        } else if message.body.contains(link.as_str()) {
            // The sequence runner already rendered `{{booking_link}}` into the body.
            message.body.clone()
        } else if message.body.trim().is_empty() {
            link.to_string()
        } else {
            format!("{}\n\n{link}", message.body.trim_end())
        };
        Ok(rendered)
    }
}

#[async_trait]
impl ChannelAdapter for CalComBookingLinkChannel {
    fn channel(&self) -> Channel {
        Channel::CalCom
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let rendered = self.render(message)?;
        self.delivery.send(&rendered).await
    }
}
