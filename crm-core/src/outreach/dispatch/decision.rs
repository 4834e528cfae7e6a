//! The dispatcher's decisions as pure functions: what a provider error leads to,
//! whether an enrollment still wants its message, when the next step is due, and which
//! anomalies pause a channel. What the approval policy is asked is
//! [`approval_request`](crate::outreach::approvals::approval_request).

use super::backoff::backoff_delay;
use super::config::max_delay;
use crate::channel::{ChannelError, ChannelErrorKind};
use crate::model::{Anomaly, Channel, Enrollment, EnrollmentState, Sequence, Severity, StepDelay};
use crate::outreach::schedule::{apply_delay, next_allowed};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// How failed sends are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before a retryable failure becomes a dead letter.
    pub max_attempts: u32,
    /// First backoff ceiling.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_cap: Duration,
}

/// What to do with a message whose send failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureAction {
    /// Put it back, due `after` from now; the attempt counts.
    Retry {
        /// The wait.
        after: Duration,
        /// Stored as `last_error`.
        reason: String,
    },
    /// Retries are exhausted.
    DeadLetter {
        /// The final reason.
        reason: String,
    },
    /// Fail for good; with `suppress`, the address is added to the suppression list.
    Fail {
        /// The final reason.
        reason: String,
        /// Whether the recipient is suppressed.
        suppress: bool,
    },
}

/// The action for `error` on a message claimed for its `attempts`-th attempt (the
/// claim counted, so the first attempt is 1). Retryable and rate-limited errors wait
/// the provider's `retry_after` when given (capped at a year), else a jittered backoff
/// (`fraction` is the random pick); at `max_attempts` they dead-letter instead. A
/// configuration error (channel not configured, secret unresolvable) retries the same
/// way, so a fixed configuration rescues the message.
/// Permanent, auth and unknown errors fail; an invalid recipient fails and suppresses.
#[must_use]
pub fn on_channel_error(
    error: &ChannelError,
    attempts: i32,
    policy: &RetryPolicy,
    fraction: f64,
) -> FailureAction {
    let reason = error.to_string();
    match error.kind() {
        ChannelErrorKind::Retryable
        | ChannelErrorKind::RateLimited
        | ChannelErrorKind::Configuration => {
            let attempts = u32::try_from(attempts).unwrap_or(0);
            if attempts >= policy.max_attempts {
                return FailureAction::DeadLetter {
                    reason: format!("gave up after {attempts} attempts: {reason}"),
                };
            }
            let after = match error.retry_after() {
                Some(wait) => Duration::from_std(wait)
                    .unwrap_or_else(|_| max_delay())
                    .min(max_delay()),
                None => backoff_delay(
                    policy.backoff_base,
                    policy.backoff_cap,
                    attempts.max(1),
                    fraction,
                ),
            };
            FailureAction::Retry { after, reason }
        }
        ChannelErrorKind::InvalidRecipient => FailureAction::Fail {
            reason,
            suppress: true,
        },
        _ => FailureAction::Fail {
            reason,
            suppress: false,
        },
    }
}

/// `now + delay`, saturating instead of overflowing.
#[must_use]
pub(super) fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    now.checked_add_signed(delay.max(Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Why the message of `step` must not go out for `enrollment`, or `None` when the
/// enrollment still waits for exactly this step (`StepPending` at `step`).
#[must_use]
pub fn enrollment_block(enrollment: &Enrollment, step: Option<i32>) -> Option<String> {
    if enrollment.state != EnrollmentState::StepPending {
        return Some(format!("enrollment is {}", enrollment.state));
    }
    match step {
        Some(step) if step == enrollment.current_step => None,
        Some(step) => Some(format!(
            "enrollment is at step {} but the message is for step {step}",
            enrollment.current_step
        )),
        None => Some("message of an enrollment has no step index".to_owned()),
    }
}

/// When the enrollment is due next after `step` of `sequence` was sent at `sent_at`:
/// the next step's delay, moved into its send window, in `tz`; after the last step,
/// `sent_at` plus the last step's delay (the reply wait). `None` if `step` is not a
/// step of the sequence, or the delay lands outside the calendar (a stored delay past
/// its maximum).
#[must_use]
pub fn next_due(
    sequence: &Sequence,
    step: i32,
    tz: Tz,
    sent_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let index = usize::try_from(step).ok()?;
    let current = sequence.steps.get(index)?;
    Some(match sequence.steps.get(index.saturating_add(1)) {
        Some(next) => next_allowed(
            next.window.as_ref(),
            tz,
            apply_delay(next.delay, tz, sent_at).ok()?,
        ),
        None => apply_delay(current.delay, tz, sent_at).ok()?,
    })
}

/// Whether [`next_due`] for `step` depends on the time zone (a business-day delay or a
/// send window); when it does not, the contact's zone need not be read.
#[must_use]
pub fn next_due_needs_time_zone(sequence: &Sequence, step: i32) -> bool {
    let Ok(index) = usize::try_from(step) else {
        return false;
    };
    let zoned = |s: &crate::model::SequenceStep| matches!(s.delay, StepDelay::BusinessDays(_));
    match sequence.steps.get(index.saturating_add(1)) {
        Some(next) => next.window.is_some() || zoned(next),
        None => sequence.steps.get(index).is_some_and(zoned),
    }
}

/// Whether `anomaly` pauses `channel`: open, error severity, about that channel, and
/// raised by one of the [`SEND_HEALTH_RULES`](crate::anomaly::SEND_HEALTH_RULES).
#[must_use]
pub fn pauses_channel(anomaly: &Anomaly, channel: Channel) -> bool {
    anomaly.status.is_open()
        && anomaly.severity == Severity::Error
        && anomaly.channel == Some(channel)
        && crate::anomaly::SEND_HEALTH_RULES.contains(&anomaly.rule.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ContactId, SequenceId, WorkspaceId};
    use crate::model::{SendWindow, SequenceStep, Template};
    use chrono::{TimeZone, Weekday};
    use std::time::Duration as StdDuration;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::seconds(10),
            backoff_cap: Duration::seconds(60),
        }
    }

    fn retryable(retry_after: Option<StdDuration>) -> ChannelError {
        ChannelError::Retryable {
            provider: "p",
            reason: "timeout".into(),
            retry_after,
            source: None,
        }
    }

    #[test]
    fn retryable_errors_back_off_then_dead_letter() {
        match on_channel_error(&retryable(None), 2, &policy(), 1.0) {
            FailureAction::Retry { after, .. } => assert_eq!(after, Duration::seconds(20)),
            other => panic!("expected a retry, got {other:?}"),
        }
        assert!(matches!(
            on_channel_error(&retryable(None), 3, &policy(), 0.5),
            FailureAction::DeadLetter { reason } if reason.contains("timeout")
        ));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let limited = ChannelError::RateLimited {
            provider: "p",
            retry_after: Some(StdDuration::from_secs(90)),
        };
        assert!(matches!(
            on_channel_error(&limited, 1, &policy(), 0.0),
            FailureAction::Retry { after, .. } if after == Duration::seconds(90)
        ));
        let absurd = retryable(Some(StdDuration::from_secs(u64::MAX)));
        assert!(matches!(
            on_channel_error(&absurd, 1, &policy(), 0.0),
            FailureAction::Retry { after, .. } if after == max_delay()
        ));
    }

    #[test]
    fn permanent_auth_and_invalid_recipient_fail() {
        let invalid = ChannelError::InvalidRecipient {
            provider: "p",
            reason: "unknown".into(),
        };
        assert!(matches!(
            on_channel_error(&invalid, 1, &policy(), 0.0),
            FailureAction::Fail { suppress: true, .. }
        ));
        let auth = ChannelError::Auth {
            provider: "p",
            reason: "bad key".into(),
        };
        assert!(matches!(
            on_channel_error(&auth, 1, &policy(), 0.0),
            FailureAction::Fail {
                suppress: false,
                ..
            }
        ));
    }

    fn step(delay: StepDelay, window: Option<SendWindow>) -> SequenceStep {
        SequenceStep {
            channel: Channel::Email,
            template: Template {
                subject: None,
                body: "Hi".into(),
            },
            delay,
            window,
            requires_approval: false,
            options: Default::default(),
        }
    }

    #[test]
    fn next_due_uses_the_next_step_or_the_reply_wait() {
        let window = SendWindow {
            start_hour: 9,
            start_minute: 0,
            end_hour: 17,
            end_minute: 0,
            weekdays: vec![Weekday::Mon, Weekday::Tue],
        };
        let steps = vec![
            step(StepDelay::Hours(0), None),
            step(StepDelay::Hours(20), Some(window)),
            step(StepDelay::Hours(72), None),
        ];
        let seq = Sequence::create(WorkspaceId::new(), "s", steps, now()).unwrap();
        // Monday 09:00 + 20 h = Tuesday 05:00 UTC, moved to the window's 09:00.
        assert_eq!(
            next_due(&seq, 0, Tz::UTC, now()),
            Some(Utc.with_ymd_and_hms(2026, 1, 6, 9, 0, 0).unwrap())
        );
        assert_eq!(
            next_due(&seq, 2, Tz::UTC, now()),
            Some(now() + Duration::hours(72))
        );
        assert_eq!(next_due(&seq, 3, Tz::UTC, now()), None);
        assert!(next_due_needs_time_zone(&seq, 0), "step 1 has a window");
        assert!(!next_due_needs_time_zone(&seq, 1));
        assert!(!next_due_needs_time_zone(&seq, 2));
        assert_eq!(next_due(&seq, -1, Tz::UTC, now()), None);
    }

    #[test]
    fn only_a_step_pending_enrollment_at_the_step_lets_the_message_go() {
        let mut e = Enrollment::new(
            WorkspaceId::new(),
            SequenceId::new(),
            1,
            ContactId::new(),
            now(),
        );
        assert_eq!(
            enrollment_block(&e, Some(0)).as_deref(),
            Some("enrollment is pending")
        );
        e.state = EnrollmentState::StepPending;
        assert_eq!(enrollment_block(&e, Some(0)), None);
        assert!(enrollment_block(&e, Some(1)).is_some());
        assert!(enrollment_block(&e, None).is_some());
    }

    #[test]
    fn only_open_error_send_health_anomalies_of_the_channel_pause_it() {
        let mut a = Anomaly::new(
            WorkspaceId::new(),
            crate::anomaly::BOUNCE_SPIKE,
            Severity::Error,
            "k",
            "bounces",
            now(),
        )
        .unwrap();
        a.channel = Some(Channel::Email);
        assert!(pauses_channel(&a, Channel::Email));
        assert!(!pauses_channel(&a, Channel::Sms));
        a.severity = Severity::Warning;
        assert!(!pauses_channel(&a, Channel::Email));
        a.severity = Severity::Error;
        a.rule = crate::anomaly::FAILURE_RATE.into();
        assert!(pauses_channel(&a, Channel::Email), "every send-health rule");
        a.rule = crate::anomaly::LOW_CONFIDENCE.into();
        assert!(
            !pauses_channel(&a, Channel::Email),
            "not a send-health rule"
        );
        a.rule = crate::anomaly::FAILURE_RATE.into();
        a.status = crate::model::AnomalyStatus::Resolved;
        assert!(!pauses_channel(&a, Channel::Email), "resolved");
    }

    #[test]
    fn later_saturates() {
        assert_eq!(
            later(DateTime::<Utc>::MAX_UTC, Duration::days(1)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(later(now(), Duration::seconds(-5)), now());
    }
}
