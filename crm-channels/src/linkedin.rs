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
//! A conflict alone proves nothing, though (another activity may hold the id, in this
//! workspace or another): the adapter then looks the task up among the contact's
//! LinkedIn tasks and succeeds only when it finds an activity with that id, for the same
//! outbox message, contact and kind. The receipt then carries the first task's time.
//!
//! # Errors
//! | Situation | Error |
//! |---|---|
//! | recipient not a `linkedin.com/in/...` profile URL | `InvalidRecipient` |
//! | no contact on the message (a task needs a timeline) or an empty draft | `Permanent` |
//! | the activity store is unavailable (recording or looking up) | `Retryable` |
//! | the task id is taken by an activity that is not this message's task | `Permanent` |
//! | any other store failure | `Permanent` |

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use crm_core::ids::ActivityId;
use crm_core::model::{Activity, ActivityKind, Channel};
use crm_core::store::{ActivityFilter, ActivityStore};
use crm_core::{
    ChannelAdapter, ChannelError, Clock, OutboundMessage, SendReceipt, StoreError, StoreErrorKind,
    SystemClock,
};
use serde_json::json;
use url::Url;

const PROVIDER: &str = "linkedin";
/// Mixed into the outbox id's random bits to derive the task's activity id.
const TASK_ID_MASK: u128 = 0x4c49_4e4b_4544; // "LINKED"
/// Activities read per page when looking for a task that already exists.
const LOOKUP_PAGE: u32 = 1000;
/// Pages read at most when looking for a task that already exists.
const LOOKUP_PAGES: usize = 10;
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

    /// The task recorded by an earlier attempt at `task`'s message, if the store holds
    /// it: same id, workspace, contact, outbox message, kind and channel. Reads the
    /// contact's LinkedIn tasks newest first, at most [`LOOKUP_PAGES`] pages.
    async fn earlier_task(&self, task: &Activity) -> Result<Option<Activity>, StoreError> {
        let mut filter = ActivityFilter {
            contact_id: task.contact_id,
            kinds: vec![ActivityKind::TaskCreated],
            channel: Some(Channel::LinkedIn),
            ..ActivityFilter::default()
        };
        for _ in 0..LOOKUP_PAGES {
            let page = self
                .activities
                .list_activities(task.workspace_id, &filter, LOOKUP_PAGE)
                .await?;
            if let Some(found) = page.iter().find(|a| a.id == task.id) {
                let same = found.workspace_id == task.workspace_id
                    && found.contact_id == task.contact_id
                    && found.outbox_message_id == task.outbox_message_id
                    && found.kind == task.kind
                    && found.channel == task.channel;
                return Ok(same.then(|| found.clone()));
            }
            let full = page.len() >= LOOKUP_PAGE as usize;
            match page.last().map(|a| a.occurred_at) {
                Some(oldest) if full && filter.until != Some(oldest) => filter.until = Some(oldest),
                _ => break,
            }
        }
        Ok(None)
    }

    /// A `Conflict` on recording `task`: success only when the task is there already.
    async fn on_conflict(
        &self,
        message: &OutboundMessage,
        task: &Activity,
        receipt: SendReceipt,
    ) -> Result<SendReceipt, ChannelError> {
        match self.earlier_task(task).await {
            Ok(Some(earlier)) => {
                tracing::debug!(provider = PROVIDER, outbox_id = %message.id, "manual LinkedIn task already recorded");
                Ok(SendReceipt {
                    accepted_at: earlier.occurred_at,
                    ..receipt
                })
            }
            Ok(None) => Err(ChannelError::Permanent {
                provider: PROVIDER,
                reason: "the task id is taken by an activity that is not this message's task"
                    .to_owned(),
            }),
            Err(e) => Err(store_error("could not look up the existing task", e)),
        }
    }
}

/// A store failure as a channel error: retryable when the store says so.
fn store_error(what: &str, e: StoreError) -> ChannelError {
    if e.is_retryable() {
        ChannelError::Retryable {
            provider: PROVIDER,
            reason: what.to_owned(),
            retry_after: None,
            source: Some(Box::new(e)),
        }
    } else {
        ChannelError::Permanent {
            provider: PROVIDER,
            reason: format!("{what}: {e}"),
        }
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
            // The task id is derived from the outbox id, so a conflict may be this very
            // task, recorded by an earlier attempt; it counts only once that is checked.
            Err(e) if e.kind() == StoreErrorKind::Conflict => {
                self.on_conflict(message, &task, receipt).await
            }
            Err(e) => Err(store_error("could not record the task", e)),
        }
    }
}
