//! The anomaly rules: pure functions of counts and thresholds. No I/O, no clock.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::anomaly::{BOUNCE_SPIKE, FAILURE_RATE, LOW_CONFIDENCE, QUOTA_EXHAUSTED};
use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::model::{Anomaly, Channel, Severity};

/// When the rules fire. Rates are fractions (0.2 is 20 %).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AnomalyThresholds {
    /// [`FAILURE_RATE`] fires above this share of failed attempts (default 0.20).
    pub failure_rate: f64,
    /// The window the failure rate is measured over (default 1 hour).
    pub failure_window: Duration,
    /// Fewer attempts (sent + failed) than this never fire (default 10), so two
    /// failures out of three sends do not raise an error.
    pub failure_min_attempts: u64,
    /// [`BOUNCE_SPIKE`]: the recent window (default 24 hours).
    pub bounce_window: Duration,
    /// [`BOUNCE_SPIKE`]: the baseline window just before the recent one (default 7
    /// days).
    pub bounce_baseline_window: Duration,
    /// The recent bounce rate must exceed this absolute floor (default 0.05).
    pub bounce_rate_floor: f64,
    /// ... and this multiple of the baseline rate (default 2.0). A baseline without
    /// sends counts as rate 0.
    pub bounce_multiple: f64,
    /// Fewer recent sends than this never fire (default 20).
    pub bounce_min_sent: u64,
    /// [`LOW_CONFIDENCE`] fires when the average is below this (default 0.6).
    pub confidence_floor: f64,
    /// The window of approval items considered, by creation time (default 24 hours).
    pub confidence_window: Duration,
    /// Fewer items with a confidence than this never fire (default 5).
    pub confidence_min_items: usize,
    /// Severity of [`QUOTA_EXHAUSTED`] (default Warning).
    pub quota_severity: Severity,
}

impl Default for AnomalyThresholds {
    fn default() -> Self {
        Self {
            failure_rate: 0.20,
            failure_window: Duration::hours(1),
            failure_min_attempts: 10,
            bounce_window: Duration::hours(24),
            bounce_baseline_window: Duration::days(7),
            bounce_rate_floor: 0.05,
            bounce_multiple: 2.0,
            bounce_min_sent: 20,
            confidence_floor: 0.6,
            confidence_window: Duration::hours(24),
            confidence_min_items: 5,
            quota_severity: Severity::Warning,
        }
    }
}

impl AnomalyThresholds {
    /// Sets the failure-rate threshold and minimum sample.
    #[must_use]
    pub fn with_failure_rate(mut self, rate: f64, min_attempts: u64) -> Self {
        self.failure_rate = rate;
        self.failure_min_attempts = min_attempts;
        self
    }

    /// Sets the bounce floor, baseline multiple and minimum sample.
    #[must_use]
    pub fn with_bounce_spike(mut self, floor: f64, multiple: f64, min_sent: u64) -> Self {
        self.bounce_rate_floor = floor;
        self.bounce_multiple = multiple;
        self.bounce_min_sent = min_sent;
        self
    }

    /// Sets the confidence floor and minimum sample.
    #[must_use]
    pub fn with_confidence(mut self, floor: f64, min_items: usize) -> Self {
        self.confidence_floor = floor;
        self.confidence_min_items = min_items;
        self
    }

    /// Sets the severity of quota exhaustion.
    #[must_use]
    pub fn with_quota_severity(mut self, severity: Severity) -> Self {
        self.quota_severity = severity;
        self
    }
}

/// A rule that fired: what to raise.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Finding {
    /// The rule's name (one of the constants of [`crate::anomaly`]).
    pub rule: &'static str,
    /// The channel concerned, if any.
    pub channel: Option<Channel>,
    /// Severity.
    pub severity: Severity,
    /// One line for people; counts and rates only, never addresses or text.
    pub summary: String,
    /// The measured values.
    pub details: Value,
}

impl Finding {
    /// `"{rule}:{channel}"`, or `"{rule}"` without a channel: at most one open anomaly
    /// per key and workspace.
    #[must_use]
    pub fn dedup_key(&self) -> String {
        match self.channel {
            Some(channel) => format!("{}:{channel}", self.rule),
            None => self.rule.to_owned(),
        }
    }

    /// The active anomaly to raise in `workspace_id`, detected at `now`.
    pub fn to_anomaly(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Anomaly, ValidationError> {
        let mut anomaly = Anomaly::new(
            workspace_id,
            self.rule,
            self.severity,
            self.dedup_key(),
            self.summary.clone(),
            now,
        )?;
        anomaly.channel = self.channel;
        anomaly.details = self.details.clone();
        Ok(anomaly)
    }
}

/// `part / whole`, 0 when `whole` is 0.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn percent(rate: f64) -> f64 {
    (rate * 1000.0).round() / 10.0
}

/// [`FAILURE_RATE`]: fires iff `sent + failed >= failure_min_attempts` (and at least
/// 1) and `failed / (sent + failed) > failure_rate`. Error severity.
#[must_use]
pub fn failure_rate(
    channel: Channel,
    sent: u64,
    failed: u64,
    thresholds: &AnomalyThresholds,
) -> Option<Finding> {
    let attempts = sent.saturating_add(failed);
    if attempts < thresholds.failure_min_attempts.max(1) {
        return None;
    }
    let rate = ratio(failed, attempts);
    (rate > thresholds.failure_rate).then(|| Finding {
        rule: FAILURE_RATE,
        channel: Some(channel),
        severity: Severity::Error,
        summary: format!(
            "{} % of {channel} sends failed ({failed} of {attempts})",
            percent(rate)
        ),
        details: json!({
            "sent": sent, "failed": failed, "rate": rate,
            "threshold": thresholds.failure_rate,
        }),
    })
}

/// Sends and bounces of one channel in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounts {
    /// `MessageSent` activities.
    pub sent: u64,
    /// `Bounced` activities.
    pub bounced: u64,
}

/// [`BOUNCE_SPIKE`]: fires iff `recent.sent >= bounce_min_sent` (and at least 1) and
/// the recent rate `bounced / sent` is above both `bounce_rate_floor` and
/// `bounce_multiple` times the baseline rate (0 when the baseline has no sends).
/// Error severity.
#[must_use]
pub fn bounce_spike(
    channel: Channel,
    recent: SendCounts,
    baseline: SendCounts,
    thresholds: &AnomalyThresholds,
) -> Option<Finding> {
    if recent.sent < thresholds.bounce_min_sent.max(1) {
        return None;
    }
    let rate = ratio(recent.bounced, recent.sent);
    let baseline_rate = ratio(baseline.bounced, baseline.sent);
    let fires =
        rate > thresholds.bounce_rate_floor && rate > thresholds.bounce_multiple * baseline_rate;
    fires.then(|| Finding {
        rule: BOUNCE_SPIKE,
        channel: Some(channel),
        severity: Severity::Error,
        summary: format!(
            "{channel} bounce rate {} % against a baseline of {} %",
            percent(rate),
            percent(baseline_rate)
        ),
        details: json!({
            "sent": recent.sent, "bounced": recent.bounced, "rate": rate,
            "baseline_sent": baseline.sent, "baseline_bounced": baseline.bounced,
            "baseline_rate": baseline_rate,
        }),
    })
}

/// [`LOW_CONFIDENCE`]: over the finite values in `confidences`, fires iff there are at
/// least `confidence_min_items` (and at least 1) and their average is below
/// `confidence_floor`. Warning severity.
#[must_use]
pub fn low_confidence(confidences: &[f64], thresholds: &AnomalyThresholds) -> Option<Finding> {
    let values: Vec<f64> = confidences
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .collect();
    if values.len() < thresholds.confidence_min_items.max(1) {
        return None;
    }
    let average = values.iter().sum::<f64>() / values.len() as f64;
    (average < thresholds.confidence_floor).then(|| Finding {
        rule: LOW_CONFIDENCE,
        channel: None,
        severity: Severity::Warning,
        summary: format!(
            "average draft confidence {:.2} over {} items is below {:.2}",
            average,
            values.len(),
            thresholds.confidence_floor
        ),
        details: json!({
            "average": average, "items": values.len(),
            "floor": thresholds.confidence_floor,
        }),
    })
}

/// [`QUOTA_EXHAUSTED`]: fires iff `cap > 0` and `used >= cap` (a zero cap turns the
/// channel off; that is not exhaustion).
#[must_use]
pub fn quota_exhausted(
    channel: Channel,
    used: u32,
    cap: u32,
    thresholds: &AnomalyThresholds,
) -> Option<Finding> {
    (cap > 0 && used >= cap).then(|| Finding {
        rule: QUOTA_EXHAUSTED,
        channel: Some(channel),
        severity: thresholds.quota_severity,
        summary: format!("daily {channel} send quota used up ({used} of {cap})"),
        details: json!({ "used": used, "cap": cap }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t() -> AnomalyThresholds {
        AnomalyThresholds::default()
    }

    #[test]
    fn failure_rate_needs_a_sample_and_more_than_twenty_percent() {
        assert!(
            failure_rate(Channel::Email, 8, 2, &t()).is_none(),
            "exactly 20 %"
        );
        let finding = failure_rate(Channel::Email, 7, 3, &t()).unwrap();
        assert_eq!(finding.dedup_key(), "failure_rate:email");
        assert_eq!(finding.severity, Severity::Error);
        assert!(
            failure_rate(Channel::Email, 1, 8, &t()).is_none(),
            "9 attempts"
        );
        assert!(failure_rate(Channel::Email, 0, 0, &t().with_failure_rate(0.2, 0)).is_none());
    }

    #[test]
    fn bounce_spike_compares_against_floor_and_baseline() {
        let recent = SendCounts {
            sent: 100,
            bounced: 10,
        };
        let calm = SendCounts {
            sent: 700,
            bounced: 14,
        };
        assert!(bounce_spike(Channel::Email, recent, calm, &t()).is_some());
        let noisy = SendCounts {
            sent: 700,
            bounced: 56,
        };
        assert!(bounce_spike(Channel::Email, recent, noisy, &t()).is_none());
        let low = SendCounts {
            sent: 100,
            bounced: 4,
        };
        assert!(bounce_spike(Channel::Email, low, SendCounts::default(), &t()).is_none());
        let small = SendCounts {
            sent: 19,
            bounced: 19,
        };
        assert!(bounce_spike(Channel::Email, small, SendCounts::default(), &t()).is_none());
    }

    #[test]
    fn low_confidence_averages_finite_values() {
        assert!(
            low_confidence(&[0.5, 0.5, 0.5, 0.5], &t()).is_none(),
            "4 items"
        );
        let f = low_confidence(&[0.5, 0.5, 0.5, 0.5, 0.6, f64::NAN], &t()).unwrap();
        assert_eq!(
            (f.dedup_key().as_str(), f.severity),
            ("low_confidence", Severity::Warning)
        );
        assert!(low_confidence(&[0.6; 5], &t()).is_none());
    }

    #[test]
    fn quota_exhausted_at_the_cap() {
        assert!(quota_exhausted(Channel::Sms, 4, 5, &t()).is_none());
        assert!(quota_exhausted(Channel::Sms, 5, 5, &t()).is_some());
        assert!(quota_exhausted(Channel::Sms, 0, 0, &t()).is_none());
    }

    proptest! {
        #[test]
        fn failure_rate_fires_iff_above_threshold(sent in 0_u64..10_000, failed in 0_u64..10_000, min in 0_u64..50) {
            let th = t().with_failure_rate(0.2, min);
            let attempts = sent + failed;
            let expected = attempts >= min.max(1) && (failed as f64) / (attempts as f64) > 0.2;
            prop_assert_eq!(failure_rate(Channel::Email, sent, failed, &th).is_some(), expected);
        }

        #[test]
        fn rules_never_panic(a in any::<u64>(), b in any::<u64>(), c in any::<u64>(), d in any::<u64>(),
                             u in any::<u32>(), v in any::<u32>(), xs in proptest::collection::vec(any::<f64>(), 0..20)) {
            let _ = failure_rate(Channel::Email, a, b, &t());
            let _ = bounce_spike(Channel::Email, SendCounts { sent: a, bounced: b }, SendCounts { sent: c, bounced: d }, &t());
            let _ = low_confidence(&xs, &t());
            let _ = quota_exhausted(Channel::Email, u, v, &t());
        }

        #[test]
        fn bounce_spike_fires_only_above_floor_and_baseline(sent in 1_u64..1000, bounced in 0_u64..1000, bs in 0_u64..5000, bb in 0_u64..5000) {
            let recent = SendCounts { sent, bounced };
            let baseline = SendCounts { sent: bs, bounced: bb };
            if let Some(f) = bounce_spike(Channel::Email, recent, baseline, &t()) {
                let rate = bounced as f64 / sent as f64;
                let base = if bs == 0 { 0.0 } else { bb as f64 / bs as f64 };
                prop_assert!(sent >= 20 && rate > 0.05 && rate > 2.0 * base);
                prop_assert_eq!(f.severity, Severity::Error);
            }
        }
    }
}
