//! Provider feedback: delivery reports, opens, clicks, failures, bounces and cancelled
//! meetings become activities on the contact's timeline (and a hard bounce stops its
//! enrollments), so scoring and the anomaly rules see them.

use serde_json::json;

use super::InboundError;
use super::task::{InboundTask, fingerprint};
use crate::inbound::InboundEvent;
use crate::model::{ActivityKind, Channel, SuppressionReason};
use crate::outreach::enrollment::EnrollmentEvent;

/// The longest provider failure reason kept in an activity, in characters: enough for
/// any provider's explanation, bounded against a hostile payload.
const MAX_REASON_CHARS: usize = 500;

/// An inbound event that reports on a message we sent or a meeting: what
/// [`InboundTask::provider_event`] records.
pub(super) enum ProviderEvent<'e> {
    /// Delivered, opened, clicked or failed: one activity about one of our messages.
    Report {
        kind: ActivityKind,
        status: &'static str,
        summary: &'static str,
        channel: Channel,
        provider_message_id: &'e str,
        reason: Option<&'e str>,
    },
    /// A hard or soft bounce.
    Bounce {
        channel: Channel,
        provider_message_id: Option<&'e str>,
        address: &'e str,
        permanent: bool,
    },
    /// A booked meeting was cancelled.
    MeetingCancelled {
        email: &'e str,
        booking_id: Option<&'e str>,
    },
}

impl<'e> ProviderEvent<'e> {
    /// The provider feedback `event` carries, if it is one.
    pub(super) fn of(event: &'e InboundEvent) -> Option<Self> {
        let report = |kind, status, summary, channel: &Channel, id: &'e String, reason| {
            Some(Self::Report {
                kind,
                status,
                summary,
                channel: *channel,
                provider_message_id: id.as_str(),
                reason,
            })
        };
        match event {
            InboundEvent::Delivered {
                channel,
                provider_message_id,
            } => report(
                ActivityKind::Delivered,
                "delivered",
                "Delivered",
                channel,
                provider_message_id,
                None,
            ),
            InboundEvent::Opened {
                channel,
                provider_message_id,
            } => report(
                ActivityKind::Opened,
                "opened",
                "Opened",
                channel,
                provider_message_id,
                None,
            ),
            InboundEvent::Clicked {
                channel,
                provider_message_id,
                ..
            } => report(
                ActivityKind::Clicked,
                "clicked",
                "Clicked a link",
                channel,
                provider_message_id,
                None,
            ),
            InboundEvent::Failed {
                channel,
                provider_message_id,
                reason,
            } => report(
                ActivityKind::SendFailed,
                "failed",
                "Delivery failed",
                channel,
                provider_message_id,
                reason.as_deref(),
            ),
            InboundEvent::Bounced {
                channel,
                provider_message_id,
                address,
                permanent,
            } => Some(Self::Bounce {
                channel: *channel,
                provider_message_id: provider_message_id.as_deref(),
                address,
                permanent: *permanent,
            }),
            InboundEvent::MeetingCancelled { email, booking_id } => Some(Self::MeetingCancelled {
                email,
                booking_id: booking_id.as_deref(),
            }),
            _ => None,
        }
    }
}

impl InboundTask<'_> {
    /// Records `event` on the contact's timeline; a hard bounce also suppresses the
    /// address and moves the contact's enrollments to `Bounced`.
    pub(super) async fn provider_event(
        &mut self,
        event: &ProviderEvent<'_>,
    ) -> Result<(), InboundError> {
        let delivery = self.delivery_id.unwrap_or("");
        match *event {
            ProviderEvent::Report {
                kind,
                status,
                summary,
                channel,
                provider_message_id,
                reason,
            } => {
                let (contact, _) = self
                    .resolve(channel, Some(provider_message_id), None)
                    .await?;
                let Some(contact) = contact else {
                    return Ok(());
                };
                let mut details = json!({
                    "status": status,
                    "provider_message_id": provider_message_id,
                    "fingerprint": fingerprint(&[status, provider_message_id, delivery]),
                });
                if let Some(reason) = reason {
                    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
                    details["reason"] = json!(reason);
                }
                self.activity(&contact, kind, summary, Some(channel), details)
                    .await?;
            }
            ProviderEvent::Bounce {
                channel,
                provider_message_id,
                address,
                permanent,
            } => {
                if permanent {
                    self.suppress(channel, address, SuppressionReason::Bounced)
                        .await?;
                }
                let (contact, enrollment) = self
                    .resolve(channel, provider_message_id, Some(address))
                    .await?;
                let Some(contact) = contact else {
                    return Ok(());
                };
                let status = if permanent { "bounced" } else { "soft_bounced" };
                let id = provider_message_id.unwrap_or("");
                let details = json!({
                    "status": status,
                    "permanent": permanent,
                    "provider_message_id": provider_message_id,
                    "fingerprint": fingerprint(&["bounced", id, delivery]),
                });
                self.activity(
                    &contact,
                    ActivityKind::Bounced,
                    "Bounced",
                    Some(channel),
                    details,
                )
                .await?;
                if permanent {
                    self.transition_contact(
                        &contact,
                        enrollment,
                        &EnrollmentEvent::Bounced,
                        "address bounced",
                    )
                    .await?;
                }
            }
            ProviderEvent::MeetingCancelled { email, booking_id } => {
                let (contact, _) = self.resolve(Channel::Email, None, Some(email)).await?;
                let Some(contact) = contact else {
                    return Ok(());
                };
                let key = booking_id.unwrap_or(delivery);
                let details = json!({
                    "status": "cancelled",
                    "booking_id": booking_id,
                    "fingerprint": fingerprint(&["meeting_cancelled", key]),
                });
                self.activity(
                    &contact,
                    ActivityKind::MeetingCancelled,
                    "Meeting cancelled",
                    None,
                    details,
                )
                .await?;
            }
        }
        Ok(())
    }
}
