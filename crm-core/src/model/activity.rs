//! Activities: the timeline of what happened with a contact or deal.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ActivityId, ContactId, DealId, OutboxMessageId, WorkspaceId};
use crate::model::Channel;
use crate::model::rules::{check_json, require_text, stored_time};
use crate::text_enum::text_enum;

text_enum! {
    /// What kind of thing happened.
    #[non_exhaustive]
    pub enum ActivityKind {
        /// An outbound message was handed to a provider.
        MessageSent = "message_sent",
        /// The contact wrote back.
        ReplyReceived = "reply_received",
        /// The provider confirmed delivery.
        Delivered = "delivered",
        /// The message bounced.
        Bounced = "bounced",
        /// The message was opened.
        Opened = "opened",
        /// A link was clicked.
        Clicked = "clicked",
        /// A message failed to send.
        SendFailed = "send_failed",
        /// A meeting was booked.
        MeetingBooked = "meeting_booked",
        /// A booked meeting was cancelled. Not a scoring signal: the booking's intent
        /// stays on record.
        MeetingCancelled = "meeting_cancelled",
        /// A manual task was created for a person.
        TaskCreated = "task_created",
        /// A note written by a person.
        Note = "note",
        /// A phone call.
        Call = "call",
        /// A deal changed stage.
        StageChanged = "stage_changed",
    }
}

/// One entry in a contact's or deal's timeline.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Id.
    pub id: ActivityId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The contact concerned, in the same workspace.
    pub contact_id: Option<ContactId>,
    /// The deal concerned, in the same workspace.
    pub deal_id: Option<DealId>,
    /// What happened.
    pub kind: ActivityKind,
    /// The channel it happened on, if any.
    pub channel: Option<Channel>,
    /// The outbox message this activity records, if any.
    pub outbox_message_id: Option<OutboxMessageId>,
    /// Short human-readable summary.
    pub summary: String,
    /// Structured details.
    pub details: serde_json::Value,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

impl Activity {
    /// An activity about `contact_id`.
    pub fn for_contact(
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        kind: ActivityKind,
        summary: impl Into<String>,
        occurred_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let activity = Self {
            id: ActivityId::new(),
            workspace_id,
            contact_id: Some(contact_id),
            deal_id: None,
            kind,
            channel: None,
            outbox_message_id: None,
            summary: summary.into(),
            details: serde_json::Value::Null,
            occurred_at: stored_time(occurred_at),
        };
        activity.validate()?;
        Ok(activity)
    }

    /// Sets the channel.
    #[must_use]
    pub fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Links the outbox message.
    #[must_use]
    pub fn with_outbox_message(mut self, id: OutboxMessageId) -> Self {
        self.outbox_message_id = Some(id);
        self
    }

    /// Links a deal.
    #[must_use]
    pub fn with_deal(mut self, id: DealId) -> Self {
        self.deal_id = Some(id);
        self
    }

    /// Sets structured details.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// An activity must concern a contact or a deal and have a summary.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.contact_id.is_none() && self.deal_id.is_none() {
            return Err(ValidationError::new(
                "activity",
                "needs a contact or a deal",
            ));
        }
        require_text("activity.summary", &self.summary)?;
        check_json("activity.details", &self.details)
    }
}
