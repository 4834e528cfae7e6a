//! Anomaly detection: pure rules over counts of recent activity, and a scanner that
//! feeds them from the store and raises deduplicated anomalies.
//!
//! | rule | input | fires when | severity |
//! |---|---|---|---|
//! | [`FAILURE_RATE`] | `SendFailed` / (`MessageSent` + `SendFailed`) per channel, last hour | rate > 20 % with at least 10 attempts | Error |
//! | [`BOUNCE_SPIKE`] | `Bounced` / `MessageSent` per channel, last 24 h vs the 7 days before | rate > 5 % and > 2 x the baseline, with at least 20 sends | Error |
//! | [`LOW_CONFIDENCE`] | confidence of approval items created in the last 24 h | average < 0.6 over at least 5 items | Warning |
//! | [`QUOTA_EXHAUSTED`] | the workspace's local day's `send:<channel>` quota usage vs the daily cap | usage >= cap (a zero cap is "channel off", not exhausted) | Warning |
//!
//! Thresholds live in [`AnomalyThresholds`]. Each finding is raised with the dedup key
//! `"{rule}:{channel}"` (or `"{rule}"`), so while it is open (active or acknowledged)
//! a later scan does not raise it again; once resolved, the next scan that still sees
//! the condition raises a new one. Scans never resolve anomalies by themselves: a
//! person resolves them, so a paused channel stays paused until someone has looked.
//!
//! Error-severity anomalies of the send-health rules ([`SEND_HEALTH_RULES`]) pause
//! their channel for the workspace while open, when
//! [`WorkspaceSettings::pause_channel_on_error_anomaly`](crate::outreach::settings::WorkspaceSettings::pause_channel_on_error_anomaly)
//! is on; the dispatcher asks [`AnomalyScanner::is_channel_paused`].
//!
//! Every newly raised anomaly is handed to the scanner's
//! [`AnomalyNotifier`](crate::approval::AnomalyNotifier) (by default
//! [`LogAnomalyNotifier`]), so a person hears of it. The inbound handler records the
//! `Bounced` and `SendFailed` activities of provider bounces and failures that the
//! rules count.

mod notify;
mod rules;
mod scanner;

pub use notify::{LogAnomalyNotifier, RecordingAnomalyNotifier};

pub use rules::{
    AnomalyThresholds, Finding, SendCounts, bounce_spike, failure_rate, low_confidence,
    quota_exhausted,
};
pub use scanner::{AnomalyError, AnomalyScanHandler, AnomalyScanner};

/// Rule: too many sends failed on a channel in the last hour.
pub const FAILURE_RATE: &str = "failure_rate";
/// Rule: the bounce rate of a channel jumped above its baseline.
pub const BOUNCE_SPIKE: &str = "bounce_spike";
/// Rule: drafts awaiting approval have low confidence on average.
pub const LOW_CONFIDENCE: &str = "low_confidence";
/// Rule: a channel's daily send quota is used up.
pub const QUOTA_EXHAUSTED: &str = "quota_exhausted";
/// The rules about sending health: an open Error-severity anomaly of one of these may
/// pause its channel.
pub const SEND_HEALTH_RULES: &[&str] = &[FAILURE_RATE, BOUNCE_SPIKE];
