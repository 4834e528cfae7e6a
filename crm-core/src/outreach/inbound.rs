//! What inbound events do to enrollments, suppressions, consent and the timeline.
//!
//! [`InboundHandler::handle`] finds the contact (through the outbox message the
//! provider id names, else by the sender's address on the channel), then:
//!
//! | event | enrollments of the contact | activity (`details.status`) | also |
//! |---|---|---|---|
//! | `Reply` | `Replied` (queued messages cancelled) | `ReplyReceived` | account-level stop |
//! | `MeetingBooked` | `Completed` under [`MeetingBookedPolicy::Complete`], else unchanged | `MeetingBooked` | |
//! | `MeetingCancelled` | unchanged (see below) | `MeetingCancelled` (`cancelled`) | |
//! | `Delivered` | unchanged | `Delivered` (`delivered`) | |
//! | `Opened` | unchanged | `Opened` (`opened`) | |
//! | `Clicked` | unchanged | `Clicked` (`clicked`) | |
//! | `Failed` | unchanged | `SendFailed` (`failed`, with the provider's reason) | |
//! | `Bounced` (permanent) | `Bounced` | `Bounced` (`bounced`) | address suppressed (`Bounced`) |
//! | `Bounced` (soft) | unchanged | `Bounced` (`soft_bounced`) | |
//! | `Complained` | `Unsubscribed` | | address suppressed (`Complained`), consent withdrawn |
//! | `Unsubscribed` | `Unsubscribed` | | address suppressed (`Unsubscribed`), consent withdrawn |
//! | `OutOfOffice` | `Paused` until the start of the return day in the contact's time zone, or `now + out_of_office_pause` | | |
//!
//! Other events (`StatusChanged`, `ApprovalDecision`) are [`InboundOutcome::Ignored`]
//! here. Suppression and consent are written first, even when no contact or enrollment
//! matches, so an opt-out is never lost. Activities of provider events about one of our
//! messages carry its channel and link to its outbox message
//! ([`InboundApplied::outbox_message_id`]); an event about a message we do not know,
//! with no address to find the contact by, records nothing.
//!
//! **What the activities feed.** Behavioral scoring counts `Opened` and `Clicked`
//! activities as opens and clicks, and a `MeetingBooked` activity as a demo request
//! ([`behavior_of`](crate::model::scoring::behavior_of),
//! [`intent_of`](crate::model::scoring::intent_of), which every store's scoring inputs
//! follow); replies and cancellations are not scoring inputs of the model. The anomaly
//! rules count `Bounced` (bounce spike) and `SendFailed` (failure rate) activities per
//! channel, so provider bounces and failures reported here raise them. A soft bounce
//! is a bounce for the bounce-spike rule too: the provider could not deliver.
//!
//! **Cancelled meetings.** A cancellation is recorded and changes no enrollment: an
//! enrollment the booking completed stays `Completed`. The contact talked to a person
//! and the cancellation is for that person to follow up (the activity is on the
//! timeline); a completed enrollment does not block enrolling the contact again.
//!
//! **Account-level stop.** With
//! [`WorkspaceSettings::account_level_stop`](crate::outreach::settings::WorkspaceSettings::account_level_stop),
//! a reply also stops the running enrollments of the other contacts of the same account
//! in the sequences the replying contact was in. They did not reply, so they end as
//! `Completed` (through the state machine's `MeetingBooked` row: running to completed,
//! queued messages cancelled), and an audit entry `outreach.account_stop` records the
//! real reason.
//!
//! **Idempotent.** Handling the same event twice is harmless: suppressions are
//! idempotent, consent is withdrawn only if it is not already, an ended enrollment is
//! left as it is, and the activity is not recorded again when an equal one exists
//! (same kind and fingerprint; the fingerprint of a provider event includes its
//! delivery id when [`InboundHandler::handle_delivery`] is given one, so two opens of
//! one message are two activities while a redelivery of either is not).
//!
//! [`InboundPipeline`] runs the whole path of one provider request: verify, deduplicate
//! in the store, parse, hand to this handler.

mod feedback;
mod pipeline;
mod task;

pub use pipeline::{
    DEFAULT_DELIVERY_LEASE, DeliveryOutcome, DeliveryReport, InboundEndpoint, InboundPipeline,
    MAX_RETRY_AFTER, PipelineError,
};

use std::sync::Arc;

use serde_json::json;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::{ContactId, EnrollmentId, OutboxMessageId, WorkspaceId};
use crate::inbound::InboundEvent;
use crate::model::{ActivityKind, Channel, SuppressionReason};
use crate::outreach::enrollment::EnrollmentEvent;
use crate::outreach::runner::{Definitions, contact_time_zone};
use crate::outreach::schedule::start_of_next_day;
use crate::outreach::settings::{MeetingBookedPolicy, SettingsError, SettingsProvider};
use crate::store::InboundHandlerStore;

use feedback::ProviderEvent;
use task::{InboundTask, fingerprint};

/// Why an inbound event could not be handled. Handling it again is safe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The store failed.
    #[error("inbound handling store call failed")]
    Store(#[from] StoreError),
    /// An enrollment kept changing under the handler; try again.
    #[error("enrollment {enrollment_id} kept changing; try again")]
    Contended {
        /// The enrollment.
        enrollment_id: EnrollmentId,
    },
    /// The workspace's settings could not be read; nothing was applied.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl InboundError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Contended { .. } => true,
            Self::Settings(e) => e.is_retryable(),
        }
    }
}

/// What handling an event changed.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct InboundApplied {
    /// The contact the event was matched to, if any.
    pub contact_id: Option<ContactId>,
    /// The outbox message the event is about, when the provider's message id named
    /// one of ours; activities recorded for the event link to it.
    pub outbox_message_id: Option<OutboxMessageId>,
    /// Enrollments of the contact this event moved.
    pub changed: Vec<EnrollmentId>,
    /// Enrollments it did not move (already ended, already paused).
    pub unchanged: Vec<EnrollmentId>,
    /// Other contacts' enrollments stopped by the account-level stop.
    pub account_stopped: Vec<EnrollmentId>,
    /// Outbox messages cancelled on the way (by the suppression, the consent
    /// withdrawal or the enrollment's move).
    pub cancelled_messages: Vec<OutboxMessageId>,
    /// Messages to the contact or address that were already being handed to the
    /// provider when the opt-out was stored: they may still go out; nothing later does.
    pub in_flight_messages: Vec<OutboxMessageId>,
    /// Whether a suppression was created (false if it existed already).
    pub suppressed: bool,
    /// Whether consent was withdrawn (false if it was already).
    pub consent_withdrawn: bool,
    /// Whether an activity was recorded (false if an equal one existed).
    pub activity_recorded: bool,
}

/// The result of [`InboundHandler::handle`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InboundOutcome {
    /// The event was applied (see the fields for what changed).
    Handled(InboundApplied),
    /// The handler does not act on this kind of event.
    Ignored,
}

/// Applies inbound events to enrollments.
#[derive(Debug, Clone)]
pub struct InboundHandler {
    store: Arc<dyn InboundHandlerStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
}

impl InboundHandler {
    /// A handler over `store`, timed by `clock`, with the workspaces' `settings`.
    #[must_use]
    pub fn new(
        store: Arc<dyn InboundHandlerStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// Applies `event` in `workspace_id` at the clock's now (see the module docs).
    /// The same as [`InboundHandler::handle_delivery`] without a delivery id.
    pub async fn handle(
        &self,
        workspace_id: WorkspaceId,
        event: &InboundEvent,
    ) -> Result<InboundOutcome, InboundError> {
        self.handle_delivery(workspace_id, event, None).await
    }

    /// Applies `event`, brought by the provider's delivery `delivery_id` (when the
    /// scheme has one), in `workspace_id` at the clock's now (see the module docs).
    pub async fn handle_delivery(
        &self,
        workspace_id: WorkspaceId,
        event: &InboundEvent,
        delivery_id: Option<&str>,
    ) -> Result<InboundOutcome, InboundError> {
        let now = self.clock.now();
        let settings = self.settings.settings(workspace_id).await?;
        let mut task = InboundTask {
            store: &*self.store,
            settings,
            workspace_id,
            now,
            definitions: Definitions::new(&*self.store, workspace_id),
            delivery_id,
            out: InboundApplied::default(),
        };
        if let Some(event) = ProviderEvent::of(event) {
            task.provider_event(&event).await?;
            return Ok(task.done());
        }
        match event {
            InboundEvent::Reply {
                channel,
                from,
                text,
                in_reply_to,
            } => {
                let (contact, enrollment) = task
                    .resolve(*channel, in_reply_to.as_deref(), Some(from))
                    .await?;
                let Some(contact) = contact else {
                    return Ok(task.done());
                };
                let fingerprint = fingerprint(&[
                    channel.as_str(),
                    in_reply_to.as_deref().unwrap_or(""),
                    text.as_deref().unwrap_or(""),
                ]);
                let details = json!({ "channel": channel, "in_reply_to": in_reply_to, "fingerprint": fingerprint });
                task.activity(
                    &contact,
                    ActivityKind::ReplyReceived,
                    "Replied",
                    Some(*channel),
                    details,
                )
                .await?;
                let replied = task
                    .transition_contact(
                        &contact,
                        enrollment,
                        &EnrollmentEvent::Replied,
                        "contact replied",
                    )
                    .await?;
                if task.settings.account_level_stop {
                    task.account_stop(&contact, &replied).await?;
                }
            }
            InboundEvent::MeetingBooked {
                email,
                starts_at,
                booking_id,
            } => {
                let (contact, _) = task.resolve(Channel::Email, None, Some(email)).await?;
                let Some(contact) = contact else {
                    return Ok(task.done());
                };
                let key = booking_id
                    .clone()
                    .or_else(|| starts_at.map(|t| t.to_rfc3339()))
                    .unwrap_or_default();
                let details = json!({ "booking_id": booking_id, "starts_at": starts_at, "fingerprint": fingerprint(&["meeting", &key]) });
                task.activity(
                    &contact,
                    ActivityKind::MeetingBooked,
                    "Meeting booked",
                    None,
                    details,
                )
                .await?;
                if task.settings.meeting_booked == MeetingBookedPolicy::Complete {
                    task.transition_contact(
                        &contact,
                        None,
                        &EnrollmentEvent::MeetingBooked,
                        "meeting booked",
                    )
                    .await?;
                }
            }
            InboundEvent::Complained {
                channel,
                provider_message_id,
                address,
            } => {
                task.opt_out(
                    *channel,
                    provider_message_id.as_deref(),
                    address,
                    SuppressionReason::Complained,
                )
                .await?;
            }
            InboundEvent::Unsubscribed { channel, address } => {
                task.opt_out(*channel, None, address, SuppressionReason::Unsubscribed)
                    .await?;
            }
            InboundEvent::OutOfOffice {
                channel,
                address,
                return_on,
            } => {
                let (contact, _) = task.resolve(*channel, None, Some(address)).await?;
                let Some(contact) = contact else {
                    return Ok(task.done());
                };
                let tz = contact_time_zone(&contact, &task.settings);
                let until = return_on
                    .and_then(|day| day.pred_opt())
                    .map(|eve| start_of_next_day(tz, eve))
                    .unwrap_or_else(|| now + task.settings.out_of_office_pause);
                let event = EnrollmentEvent::OutOfOffice { until };
                task.transition_contact(&contact, None, &event, "contact out of office")
                    .await?;
            }
            _ => return Ok(InboundOutcome::Ignored),
        }
        Ok(task.done())
    }
}
