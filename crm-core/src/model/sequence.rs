//! Outreach sequences and enrollments.

use chrono::{DateTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crate::model::Channel;
use crate::model::rules::{
    MAX_NAME_BYTES, MAX_TITLE_BYTES, require_text, require_text_max, stored_time, text_opt,
};
use crate::text_enum::text_enum;

/// How long to wait after the previous step.
///
/// At most [`StepDelay::MAX_HOURS`] or [`StepDelay::MAX_BUSINESS_DAYS`] (about ten
/// years either way), checked when a sequence is saved, so schedule arithmetic stays
/// far inside the calendar's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit", content = "amount")]
pub enum StepDelay {
    /// Wall-clock hours.
    Hours(u32),
    /// Business days (Monday to Friday) in the contact's time zone.
    BusinessDays(u32),
}

impl StepDelay {
    /// The longest delay in hours: ten years of 365.25 days.
    pub const MAX_HOURS: u32 = 87_660;
    /// The longest delay in business days: ten years of 261 business days.
    pub const MAX_BUSINESS_DAYS: u32 = 2_610;

    /// Refuses a delay longer than its maximum.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let (amount, max, unit) = match *self {
            Self::Hours(h) => (h, Self::MAX_HOURS, "hours"),
            Self::BusinessDays(d) => (d, Self::MAX_BUSINESS_DAYS, "business days"),
        };
        if amount > max {
            return Err(ValidationError::new(
                "step.delay",
                format!("{amount} {unit} is longer than the maximum of {max} {unit}"),
            ));
        }
        Ok(())
    }
}

/// Local hours and weekdays in which a step may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    /// First allowed hour (0 to 23), inclusive.
    pub start_hour: u8,
    /// Hour the window closes (1 to 24), exclusive.
    pub end_hour: u8,
    /// Allowed weekdays.
    pub weekdays: Vec<Weekday>,
}

/// A step's message template with `{{merge_field}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Subject line, for channels that have one.
    pub subject: Option<String>,
    /// Body.
    pub body: String,
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceStep {
    /// Channel.
    pub channel: Channel,
    /// Template.
    pub template: Template,
    /// Delay after the previous step (or after enrolling, for the first).
    pub delay: StepDelay,
    /// Send window; `None` means any time.
    pub window: Option<SendWindow>,
    /// Whether this step always needs a human's approval.
    pub requires_approval: bool,
}

text_enum! {
    /// What happens to running enrollments when a sequence is edited.
    pub enum InFlightPolicy {
        /// Running enrollments finish on the version they started on.
        KeepVersion = "keep_version",
        /// Running enrollments continue on the new version.
        Migrate = "migrate",
    }
}

/// A named, ordered list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// Id.
    pub id: SequenceId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Steps in order; at least one.
    pub steps: Vec<SequenceStep>,
    /// Policy for running enrollments when edited.
    pub in_flight_policy: InFlightPolicy,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version; also the definition version enrollments record.
    pub version: i64,
}

impl Sequence {
    /// A version-1 sequence.
    pub fn create(
        workspace_id: WorkspaceId,
        name: impl Into<String>,
        steps: Vec<SequenceStep>,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let sequence = Self {
            id: SequenceId::new(),
            workspace_id,
            name: name.into().trim().to_owned(),
            steps,
            in_flight_policy: InFlightPolicy::KeepVersion,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        sequence.validate()?;
        Ok(sequence)
    }

    /// A name, at least one step, delays within their maximum, non-empty bodies and
    /// sane windows.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text_max("sequence.name", &self.name, MAX_NAME_BYTES)?;
        if self.steps.is_empty() {
            return Err(ValidationError::new(
                "sequence.steps",
                "needs at least one step",
            ));
        }
        for step in &self.steps {
            step.delay.validate()?;
            require_text("step.template.body", &step.template.body)?;
            text_opt(
                "step.template.subject",
                step.template.subject.as_deref(),
                MAX_TITLE_BYTES,
            )?;
            if let Some(w) = &step.window
                && (w.start_hour >= w.end_hour || w.end_hour > 24 || w.weekdays.is_empty())
            {
                return Err(ValidationError::new(
                    "step.window",
                    "needs start_hour < end_hour <= 24 and at least one weekday",
                ));
            }
        }
        Ok(())
    }
}

text_enum! {
    /// The states of an enrollment.
    pub enum EnrollmentState {
        /// Created, not yet started.
        Pending = "pending",
        /// Running, between steps.
        Active = "active",
        /// A step is due or queued to send.
        StepPending = "step_pending",
        /// A step was sent; waiting for the next delay.
        StepSent = "step_sent",
        /// The contact replied; no further steps.
        Replied = "replied",
        /// All steps sent with no response.
        NoResponse = "no_response",
        /// Finished (meeting booked or sequence completed).
        Completed = "completed",
        /// Paused (out of office, by hand); resumes later.
        Paused = "paused",
        /// The address bounced.
        Bounced = "bounced",
        /// The contact unsubscribed.
        Unsubscribed = "unsubscribed",
        /// Stopped by an error.
        Failed = "failed",
    }
}

impl EnrollmentState {
    /// Whether the enrollment still holds the contact in the sequence (blocks a second
    /// enrollment in the same sequence).
    #[must_use]
    pub const fn is_running(&self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Active | Self::StepPending | Self::StepSent | Self::Paused
        )
    }
}

/// One contact's run through one sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Id.
    pub id: EnrollmentId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The sequence.
    pub sequence_id: SequenceId,
    /// The sequence version the enrollment follows.
    pub sequence_version: i64,
    /// The contact.
    pub contact_id: ContactId,
    /// State.
    pub state: EnrollmentState,
    /// Index of the next step to run (0-based).
    pub current_step: i32,
    /// When the runner should look at it next; `None` when nothing is due.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Enrollment {
    /// A pending enrollment of `contact_id` in version `sequence_version` of a sequence,
    /// due at `now`.
    #[must_use]
    pub fn new(
        workspace_id: WorkspaceId,
        sequence_id: SequenceId,
        sequence_version: i64,
        contact_id: ContactId,
        now: DateTime<Utc>,
    ) -> Self {
        let now = stored_time(now);
        Self {
            id: EnrollmentId::new(),
            workspace_id,
            sequence_id,
            sequence_version,
            contact_id,
            state: EnrollmentState::Pending,
            current_step: 0,
            next_run_at: Some(now),
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_delay(delay: StepDelay) -> Result<Sequence, ValidationError> {
        let step = SequenceStep {
            channel: Channel::Email,
            template: Template {
                subject: None,
                body: "Hi".into(),
            },
            delay,
            window: None,
            requires_approval: false,
        };
        Sequence::create(
            WorkspaceId::new(),
            "Intro",
            vec![step],
            DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn delays_past_their_maximum_are_refused_when_saved() {
        assert!(with_delay(StepDelay::Hours(StepDelay::MAX_HOURS)).is_ok());
        assert!(with_delay(StepDelay::BusinessDays(StepDelay::MAX_BUSINESS_DAYS)).is_ok());
        for delay in [
            StepDelay::Hours(StepDelay::MAX_HOURS + 1),
            StepDelay::Hours(u32::MAX),
            StepDelay::BusinessDays(StepDelay::MAX_BUSINESS_DAYS + 1),
            StepDelay::BusinessDays(u32::MAX),
        ] {
            let err = with_delay(delay).expect_err("refused");
            assert_eq!(err.field(), "step.delay", "{err}");
        }
    }
}
