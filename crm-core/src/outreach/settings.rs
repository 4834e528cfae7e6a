//! Per-workspace outreach settings, supplied by the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::ids::WorkspaceId;
use crate::model::{Channel, ChannelConfig, normalize_address};
use crate::store::QuotaKey;

/// What to do when a contact is already running another sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParallelSequencePolicy {
    /// Refuse the second enrollment (the default).
    #[default]
    Refuse,
    /// Allow it.
    Allow,
}

/// What a booked meeting does to the contact's running enrollments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeetingBookedPolicy {
    /// Stop them as completed (the default).
    #[default]
    Complete,
    /// Keep them running.
    Continue,
}

/// Addresses and domains that may receive messages. When a workspace has an allowlist,
/// nothing else is sent, in dry-run too: a safety net for staging and pilots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    addresses: BTreeSet<String>,
    domains: BTreeSet<String>,
}

impl Allowlist {
    /// An empty allowlist (allows nothing).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows one address (normalised).
    #[must_use]
    pub fn with_address(mut self, address: &str) -> Self {
        self.addresses.insert(normalize_address(address));
        self
    }

    /// Allows every email address at `domain`.
    #[must_use]
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domains.insert(domain.trim().to_ascii_lowercase());
        self
    }

    /// Whether `address` may receive messages.
    #[must_use]
    pub fn allows(&self, address: &str) -> bool {
        let normalized = normalize_address(address);
        if self.addresses.contains(&normalized) {
            return true;
        }
        normalized
            .rsplit_once('@')
            .is_some_and(|(_, domain)| self.domains.contains(domain))
    }
}

/// The outreach settings of one workspace.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkspaceSettings {
    /// Time zone for contacts without one.
    pub default_time_zone: Tz,
    /// Most messages a contact may receive per local day, across channels.
    pub daily_touch_limit: u32,
    /// Whether a contact may run two sequences at once.
    pub parallel_sequences: ParallelSequencePolicy,
    /// Daily send cap per channel; a channel missing here uses `default_daily_cap`.
    pub daily_send_caps: BTreeMap<Channel, u32>,
    /// Daily send cap for channels not listed in `daily_send_caps`.
    pub default_daily_cap: u32,
    /// When set, only these recipients may receive anything.
    pub allowlist: Option<Allowlist>,
    /// Send nothing for real; record what would be sent.
    pub dry_run: bool,
    /// A reply from any contact of an account stops the account's other enrollments in
    /// the same sequence.
    pub account_level_stop: bool,
    /// What a booked meeting does.
    pub meeting_booked: MeetingBookedPolicy,
    /// How long an out-of-office answer without a return date pauses an enrollment.
    pub out_of_office_pause: Duration,
    /// Whether an error-severity send-health anomaly pauses the channel.
    pub pause_channel_on_error_anomaly: bool,
    /// How each channel reaches its provider; credentials are `secret://` references.
    pub channels: BTreeMap<Channel, ChannelConfig>,
}

impl Default for WorkspaceSettings {
    fn default() -> Self {
        Self {
            default_time_zone: Tz::UTC,
            daily_touch_limit: 2,
            parallel_sequences: ParallelSequencePolicy::Refuse,
            daily_send_caps: BTreeMap::new(),
            default_daily_cap: 200,
            allowlist: None,
            dry_run: false,
            account_level_stop: false,
            meeting_booked: MeetingBookedPolicy::Complete,
            out_of_office_pause: Duration::days(7),
            pause_channel_on_error_anomaly: true,
            channels: BTreeMap::new(),
        }
    }
}

/// The daily send quota counter of `channel` for the local `day`: `send:<channel>`.
/// The dispatcher consumes it, the forecast and the anomaly scanner read it.
#[must_use]
pub fn send_quota_key(channel: Channel, day: NaiveDate) -> QuotaKey {
    QuotaKey::new(format!("send:{}", channel.as_str()), day)
}

impl WorkspaceSettings {
    /// The send quota counter of `channel` for the day `now` falls on in the
    /// workspace's default time zone, so "daily" means the workspace's day.
    #[must_use]
    pub fn send_quota_key(&self, channel: Channel, now: DateTime<Utc>) -> QuotaKey {
        send_quota_key(
            channel,
            now.with_timezone(&self.default_time_zone).date_naive(),
        )
    }

    /// The daily cap for `channel`.
    #[must_use]
    pub fn daily_cap(&self, channel: Channel) -> u32 {
        self.daily_send_caps
            .get(&channel)
            .copied()
            .unwrap_or(self.default_daily_cap)
    }

    /// Sets the default time zone.
    #[must_use]
    pub fn with_default_time_zone(mut self, tz: Tz) -> Self {
        self.default_time_zone = tz;
        self
    }

    /// Sets the daily touch limit.
    #[must_use]
    pub fn with_daily_touch_limit(mut self, limit: u32) -> Self {
        self.daily_touch_limit = limit;
        self
    }

    /// Sets the parallel-sequence policy.
    #[must_use]
    pub fn with_parallel_sequences(mut self, policy: ParallelSequencePolicy) -> Self {
        self.parallel_sequences = policy;
        self
    }

    /// Sets the daily cap of one channel.
    #[must_use]
    pub fn with_daily_cap(mut self, channel: Channel, cap: u32) -> Self {
        self.daily_send_caps.insert(channel, cap);
        self
    }

    /// Sets the allowlist.
    #[must_use]
    pub fn with_allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// Forces dry-run.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Turns the account-level stop on or off.
    #[must_use]
    pub fn with_account_level_stop(mut self, on: bool) -> Self {
        self.account_level_stop = on;
        self
    }

    /// Configures `channel` to reach its provider through `config`.
    #[must_use]
    pub fn with_channel(mut self, channel: Channel, config: ChannelConfig) -> Self {
        self.channels.insert(channel, config);
        self
    }

    /// Sets the meeting-booked policy.
    #[must_use]
    pub fn with_meeting_booked(mut self, policy: MeetingBookedPolicy) -> Self {
        self.meeting_booked = policy;
        self
    }
}

/// Where engines get a workspace's settings. Hosts implement it over their own
/// configuration; [`StaticSettings`] serves fixed values.
#[async_trait]
pub trait SettingsProvider: Send + Sync + Debug + 'static {
    /// The settings of `workspace_id`.
    async fn settings(&self, workspace_id: WorkspaceId) -> WorkspaceSettings;
}

/// The same settings for every workspace, with optional per-workspace overrides.
#[derive(Debug, Clone, Default)]
pub struct StaticSettings {
    default: WorkspaceSettings,
    overrides: BTreeMap<WorkspaceId, WorkspaceSettings>,
}

impl StaticSettings {
    /// `settings` for every workspace.
    #[must_use]
    pub fn new(settings: WorkspaceSettings) -> Self {
        Self {
            default: settings,
            overrides: BTreeMap::new(),
        }
    }

    /// Different settings for one workspace.
    #[must_use]
    pub fn with_workspace(
        mut self,
        workspace_id: WorkspaceId,
        settings: WorkspaceSettings,
    ) -> Self {
        self.overrides.insert(workspace_id, settings);
        self
    }
}

#[async_trait]
impl SettingsProvider for StaticSettings {
    async fn settings(&self, workspace_id: WorkspaceId) -> WorkspaceSettings {
        self.overrides
            .get(&workspace_id)
            .unwrap_or(&self.default)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_match_addresses_and_domains() {
        let list = Allowlist::new()
            .with_address("Boss@Example.com")
            .with_domain("Test.Example");
        assert!(list.allows("boss@example.com"));
        assert!(list.allows("anyone@test.example"));
        assert!(!list.allows("other@example.com"));
        assert!(!list.allows("+4915112345678"));
        assert!(
            Allowlist::new()
                .with_address("+49 151 12345678")
                .allows("+4915112345678")
        );
    }

    #[test]
    fn caps_fall_back_to_the_default() {
        let s = WorkspaceSettings::default().with_daily_cap(Channel::Email, 5);
        assert_eq!(s.daily_cap(Channel::Email), 5);
        assert_eq!(s.daily_cap(Channel::WhatsApp), 200);
    }
}
