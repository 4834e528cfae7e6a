//! Outreach sequences and enrollments.

use chrono::{DateTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use std::collections::BTreeMap;

use crate::ids::{ContactId, EnrollmentId, OutboxMessageId, SequenceId, WorkspaceId};
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

/// Local times of day and weekdays in which a step may be sent.
///
/// The window opens at `start_hour:start_minute` and closes at `end_hour:end_minute`
/// (exclusive) in the contact's time zone, on each of `weekdays`; `24:00` closes it at
/// midnight. The minutes were added after the hours: a stored window without them
/// (every sequence saved before) reads as whole hours, and a window on whole hours is
/// stored without them, so old and new readers agree on the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    /// Hour the window opens (0 to 23), inclusive.
    pub start_hour: u8,
    /// Minute past `start_hour` the window opens (0 to 59; default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_minute: u8,
    /// Hour the window closes (1 to 24), exclusive.
    pub end_hour: u8,
    /// Minute past `end_hour` the window closes (0 to 59; default 0; 0 when
    /// `end_hour` is 24).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub end_minute: u8,
    /// Allowed weekdays.
    pub weekdays: Vec<Weekday>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl SendWindow {
    /// A window from `start_hour:00` to `end_hour:00` on `weekdays`.
    #[must_use]
    pub fn hours(start_hour: u8, end_hour: u8, weekdays: Vec<Weekday>) -> Self {
        Self {
            start_hour,
            start_minute: 0,
            end_hour,
            end_minute: 0,
            weekdays,
        }
    }

    /// The same window opening at `start_minute` past its start hour and closing at
    /// `end_minute` past its end hour.
    #[must_use]
    pub fn with_minutes(mut self, start_minute: u8, end_minute: u8) -> Self {
        self.start_minute = start_minute;
        self.end_minute = end_minute;
        self
    }

    /// Minutes after local midnight the window opens.
    #[must_use]
    pub fn opens_at_minute(&self) -> u16 {
        u16::from(self.start_hour) * 60 + u16::from(self.start_minute)
    }

    /// Minutes after local midnight the window closes (exclusive; 1440 is midnight).
    #[must_use]
    pub fn closes_at_minute(&self) -> u16 {
        u16::from(self.end_hour) * 60 + u16::from(self.end_minute)
    }

    /// Opens at or after 00:00 and before it closes, closes no later than 24:00, minutes
    /// below 60, at least one weekday.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let sane = self.start_minute < 60
            && self.end_minute < 60
            && self.start_hour <= 23
            && self.opens_at_minute() < self.closes_at_minute()
            && self.closes_at_minute() <= 24 * 60;
        if !sane {
            return Err(ValidationError::new(
                "step.window",
                "needs start < end <= 24:00 and minutes below 60",
            ));
        }
        if self.weekdays.is_empty() {
            return Err(ValidationError::new(
                "step.window",
                "needs at least one weekday",
            ));
        }
        Ok(())
    }
}

/// A step's message template with `{{merge_field}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Subject line, for channels that have one.
    pub subject: Option<String>,
    /// Body.
    pub body: String,
}

/// An approved WhatsApp template (a Twilio Content template) a step sends instead of
/// its free-form body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppTemplate {
    /// The template's id at the provider (Twilio `ContentSid`, `HX...`).
    pub content_sid: String,
    /// The template's variables by position or name (`"1"`), each a template with
    /// `{{merge_field}}` placeholders, rendered per contact like the body.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// What a step's channel needs beyond the subject and body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOptions {
    /// WhatsApp: the approved template to send. Outside the 24-hour window after the
    /// contact's last message WhatsApp accepts nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp_template: Option<WhatsAppTemplate>,
    /// WhatsApp: whether the free-form body may be sent without a template (it then
    /// goes only within 24 hours of the contact's last inbound message; outside it the
    /// step cannot be sent and the sequence's [`StepFailurePolicy`] applies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_free_form: bool,
    /// The booking link `{{booking_link}}` renders to in this step; without it the
    /// workspace's Cal.com booking link is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_link: Option<String>,
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
    /// What the step's channel needs beyond the template (WhatsApp template, booking
    /// link).
    #[serde(default)]
    pub options: StepOptions,
}

impl SequenceStep {
    /// A step on `channel` with `template`, due `delay` after the previous one, any
    /// time, without approval or channel options.
    #[must_use]
    pub fn new(channel: Channel, template: Template, delay: StepDelay) -> Self {
        Self {
            channel,
            template,
            delay,
            window: None,
            requires_approval: false,
            options: StepOptions::default(),
        }
    }
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

text_enum! {
    /// Whether a sequence runs.
    pub enum SequenceStatus {
        /// Its enrollments run (the default).
        Active = "active",
        /// The runner leaves its enrollments alone until it is resumed; contacts may
        /// still be enrolled and wait.
        Paused = "paused",
        /// Retired: its enrollments were stopped and no contact can be enrolled.
        Archived = "archived",
    }
}

text_enum! {
    /// What happens to an enrollment whose step message cannot be sent (approval
    /// rejected or expired, cancelled, failed, dead-lettered).
    pub enum StepFailurePolicy {
        /// Skip the step: the next one is due after its delay (the default).
        Skip = "skip",
        /// End the enrollment as `Failed` with reason `step_failed`.
        FailEnrollment = "fail_enrollment",
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
    /// Whether it runs (active, paused, archived).
    pub status: SequenceStatus,
    /// What a step that cannot be sent does to its enrollment.
    pub step_failure_policy: StepFailurePolicy,
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
            status: SequenceStatus::Active,
            step_failure_policy: StepFailurePolicy::Skip,
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
            if let Some(window) = &step.window {
                window.validate()?;
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
        /// Stopped by an error (a step that could not be sent, by policy).
        Failed = "failed",
        /// Stopped on purpose: by a person, an account-level stop, or archiving its
        /// sequence; [`Enrollment::end_reason`] says which.
        Stopped = "stopped",
    }
}

/// The [`Enrollment::end_reason`] codes the engine writes. Hosts stopping an
/// enrollment may use codes of their own.
pub mod end_reasons {
    /// Stopped or paused by a person.
    pub const MANUAL: &str = "manual";
    /// Another contact of the same account replied (account-level stop).
    pub const ACCOUNT_REPLY: &str = "account_reply";
    /// The contact booked a meeting.
    pub const MEETING_BOOKED: &str = "meeting_booked";
    /// The contact replied.
    pub const REPLIED: &str = "replied";
    /// The contact's address bounced.
    pub const BOUNCED: &str = "bounced";
    /// The contact unsubscribed.
    pub const UNSUBSCRIBED: &str = "unsubscribed";
    /// A step's message could not be sent and the policy fails the enrollment.
    pub const STEP_FAILED: &str = "step_failed";
    /// Its sequence was archived.
    pub const SEQUENCE_ARCHIVED: &str = "sequence_archived";
    /// Every step was handled and the reply wait is over.
    pub const ALL_STEPS_DONE: &str = "all_steps_done";
    /// Paused by an out-of-office answer.
    pub const OUT_OF_OFFICE: &str = "out_of_office";
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
    /// Why it ended, or why it is paused: a short code (see [`end_reasons`]);
    /// cleared when it resumes.
    pub end_reason: Option<String>,
    /// When it ended (left the running states); `None` while running.
    pub ended_at: Option<DateTime<Utc>>,
    /// The outbox message queued for the step most recently queued, so the runner can
    /// see whether it went out or ended unsent.
    pub step_message_id: Option<OutboxMessageId>,
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
            end_reason: None,
            ended_at: None,
            step_message_id: None,
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
        let step = SequenceStep::new(
            Channel::Email,
            Template {
                subject: None,
                body: "Hi".into(),
            },
            delay,
        );
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

    fn with_window(window: SendWindow) -> Result<Sequence, ValidationError> {
        let mut step = SequenceStep::new(
            Channel::Email,
            Template {
                subject: None,
                body: "Hi".into(),
            },
            StepDelay::Hours(0),
        );
        step.window = Some(window);
        Sequence::create(
            WorkspaceId::new(),
            "Intro",
            vec![step],
            DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn windows_have_minute_precision_and_are_checked() {
        let days = || vec![Weekday::Mon];
        assert!(with_window(SendWindow::hours(9, 17, days()).with_minutes(30, 15)).is_ok());
        assert!(with_window(SendWindow::hours(2, 3, days()).with_minutes(0, 30)).is_ok());
        assert!(with_window(SendWindow::hours(0, 24, days())).is_ok());
        assert!(with_window(SendWindow::hours(9, 9, days()).with_minutes(0, 1)).is_ok());
        for bad in [
            SendWindow::hours(9, 9, days()).with_minutes(30, 30),
            SendWindow::hours(9, 9, days()).with_minutes(31, 30),
            SendWindow::hours(9, 17, days()).with_minutes(60, 0),
            SendWindow::hours(9, 17, days()).with_minutes(0, 60),
            SendWindow::hours(9, 24, days()).with_minutes(0, 1),
            SendWindow::hours(24, 24, days()),
            SendWindow::hours(9, 17, Vec::new()),
        ] {
            let err = with_window(bad.clone()).expect_err("refused");
            assert_eq!(err.field(), "step.window", "{bad:?}: {err}");
        }
    }

    #[test]
    fn windows_stored_without_minutes_still_load() {
        let old = r#"{"start_hour":9,"end_hour":17,"weekdays":["Mon","Fri"]}"#;
        let window: SendWindow = serde_json::from_str(old).expect("old window");
        assert_eq!(
            window,
            SendWindow::hours(9, 17, vec![Weekday::Mon, Weekday::Fri])
        );
        // Whole hours are written as before; minutes only when set.
        assert_eq!(serde_json::to_string(&window).expect("json"), old);
        let precise = window.with_minutes(30, 15);
        let json = serde_json::to_string(&precise).expect("json");
        assert!(json.contains(r#""start_minute":30"#) && json.contains(r#""end_minute":15"#));
        assert_eq!(
            serde_json::from_str::<SendWindow>(&json).expect("back"),
            precise
        );
    }
}
