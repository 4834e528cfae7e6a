//! LinkedIn: assisted send.
//!
//! LinkedIn's Messages API is restricted to approved partners ("subject to limitations
//! via API agreement"), and even partners may only send on a specific member action,
//! with the member able to edit the draft. There is no self-serve API that sends a
//! direct message. So this adapter sends nothing: it turns the message into a **manual
//! task** for a person, who opens the profile, reviews the drafted text and sends it
//! from their own LinkedIn account.
//!
//! The task is recorded as an activity of kind `TaskCreated` on the contact's timeline,
//! on the `linkedin` channel, linked to the outbox message, with these `details`:
//!
//! ```json
//! { "assisted_send": true, "profile_url": "https://www.linkedin.com/in/ada",
//!   "subject": null, "draft": "Hi Ada, ...", "instructions": "..." }
//! ```
//!
//! The receipt's provider message id is `linkedin-task:<outbox id>`. The activity id is
//! derived from the outbox id, so a retried send finds the task already recorded (the
//! store reports a conflict) and returns the same receipt instead of a second task.
//!
//! # Errors
//! | Situation | Error |
//! |---|---|
//! | recipient not a `linkedin.com/in/...` profile URL | `InvalidRecipient` |
//! | no contact on the message (a task needs a timeline) or an empty draft | `Permanent` |
//! | the activity store is unavailable | `Retryable` |
//! | any other store failure | `Permanent` |

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use crm_core::ids::ActivityId;
use crm_core::model::{Activity, ActivityKind, Channel};
use crm_core::store::ActivityStore;
use crm_core::{
    ChannelAdapter, ChannelError, Clock, OutboundMessage, SendReceipt, StoreErrorKind, SystemClock,
};
use serde_json::json;
use url::Url;

const PROVIDER: &str = "linkedin";
/// Mixed into the outbox id's random bits to derive the task's activity id.
const TASK_ID_MASK: u128 = 0x4c49_4e4b_4544; // "LINKED"
/// What the person is asked to do.
pub const INSTRUCTIONS: &str = "LinkedIn's messaging API is partner-only, so this message is \
not sent automatically. Open the profile, review and edit the draft, send it from your own \
LinkedIn account, then mark this task done.";

/// Records LinkedIn messages as manual tasks instead of sending them.
pub struct LinkedInAssistedChannel {
    activities: Arc<dyn ActivityStore>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for LinkedInAssistedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkedInAssistedChannel")
            .finish_non_exhaustive()
    }
}

/// A normalised `https://www.linkedin.com/in/<slug>` profile URL.
fn profile_url(recipient: &str) -> Result<Url, ChannelError> {
    let invalid = || ChannelError::InvalidRecipient {
        provider: PROVIDER,
        reason: "the recipient must be a linkedin.com/in/... profile URL".to_owned(),
    };
    let trimmed = recipient.trim();
    let with_scheme = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let url = Url::parse(&with_scheme).map_err(|_| invalid())?;
    let host_ok = url
        .host_str()
        .is_some_and(|h| h == "linkedin.com" || h.ends_with(".linkedin.com"));
    let slug = url
        .path_segments()
        .and_then(|mut s| match (s.next(), s.next()) {
            (Some("in"), Some(slug)) if !slug.is_empty() => Some(slug.to_owned()),
            _ => None,
        });
    match (host_ok, slug) {
        (true, Some(slug)) => {
            Url::parse(&format!("https://www.linkedin.com/in/{slug}")).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

impl LinkedInAssistedChannel {
    /// Records tasks in `activities`, timed by the system clock.
    #[must_use]
    pub fn new(activities: Arc<dyn ActivityStore>) -> Self {
        Self {
            activities,
            clock: Arc::new(SystemClock),
        }
    }

    /// Times tasks and receipts by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The activity id of the task for outbox message `message`.
    #[must_use]
    pub fn task_id(message: &OutboundMessage) -> ActivityId {
        let outbox = message.id.as_uuid().as_u128();
        ActivityId::from_uuid(uuid::Uuid::from_u128(outbox ^ TASK_ID_MASK))
    }

    /// The task activity for `message`, without recording it.
    pub fn task(&self, message: &OutboundMessage) -> Result<Activity, ChannelError> {
        let profile = profile_url(&message.recipient)?;
        let permanent = |reason: &str| ChannelError::Permanent {
            provider: PROVIDER,
            reason: reason.to_owned(),
        };
        let contact = message
            .contact_id
            .ok_or_else(|| permanent("an assisted LinkedIn send needs a contact for its task"))?;
        if message.body.trim().is_empty() {
            return Err(permanent("the draft is empty"));
        }
        let mut task = Activity::for_contact(
            message.workspace_id,
            contact,
            ActivityKind::TaskCreated,
            "Send the drafted LinkedIn message",
            self.clock.now(),
        )
        .map_err(|e| permanent(&e.to_string()))?
        .with_channel(Channel::LinkedIn)
        .with_outbox_message(message.id)
        .with_details(json!({
            "assisted_send": true,
            "profile_url": profile.as_str(),
            "subject": message.subject,
            "draft": message.body,
            "instructions": INSTRUCTIONS,
        }));
        task.id = Self::task_id(message);
        Ok(task)
    }
}

#[async_trait]
impl ChannelAdapter for LinkedInAssistedChannel {
    fn channel(&self) -> Channel {
        Channel::LinkedIn
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let task = self.task(message)?;
        let receipt = SendReceipt {
            provider_message_id: Some(format!("linkedin-task:{}", message.idempotency_key())),
            accepted_at: task.occurred_at,
        };
        match self.activities.record_activity(&task).await {
            Ok(_) => {
                tracing::info!(provider = PROVIDER, outbox_id = %message.id, "manual LinkedIn task created");
                Ok(receipt)
            }
            // The task id is derived from the outbox id: a conflict is this very task,
            // recorded by an earlier attempt.
            Err(e) if e.kind() == StoreErrorKind::Conflict => Ok(receipt),
            Err(e) if e.is_retryable() => Err(ChannelError::Retryable {
                provider: PROVIDER,
                reason: "could not record the task".to_owned(),
                retry_after: None,
                source: Some(Box::new(e)),
            }),
            Err(e) => Err(ChannelError::Permanent {
                provider: PROVIDER,
                reason: format!("could not record the task: {e}"),
            }),
        }
    }
}
