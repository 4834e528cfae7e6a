//! The settings of one workspace: send limits, safety nets and provider configuration.
//!
//! See [`WorkspaceSettings`] for the serialized form and the rules checked on save.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::model::rules::{MAX_EMAIL_BYTES, MAX_KEY_BYTES, no_nul_map, require_text_max};
use crate::model::{Channel, ChannelConfig, normalize_address};
use crate::text_enum::text_enum;

/// The largest daily send cap of a channel (and the default cap).
pub const MAX_DAILY_CAP: u32 = 1_000_000;
/// The largest daily touch limit per contact.
pub const MAX_DAILY_TOUCH_LIMIT: u32 = 100;
/// The largest number of entries (addresses plus domains) of an allowlist.
pub const MAX_ALLOWLIST_ENTRIES: usize = 10_000;
/// The longest out-of-office pause, in days.
pub const MAX_OUT_OF_OFFICE_PAUSE_DAYS: i64 = 365;

text_enum! {
    /// What to do when a contact is already running another sequence.
    #[derive(Default)]
    pub enum ParallelSequencePolicy {
        /// Refuse the second enrollment (the default).
        #[default]
        Refuse = "refuse",
        /// Allow it.
        Allow = "allow",
    }
}

text_enum! {
    /// What a booked meeting does to the contact's running enrollments.
    #[derive(Default)]
    pub enum MeetingBookedPolicy {
        /// Stop them as completed (the default).
        #[default]
        Complete = "complete",
        /// Keep them running.
        Continue = "continue",
    }
}

/// Addresses and domains that may receive messages. When a workspace has an allowlist,
/// nothing else is sent, in dry-run too: a safety net for staging and pilots.
///
/// Serialized as `{"addresses": [...], "domains": [...]}`; entries are normalised on
/// the way in, whichever way they come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AllowlistEntries")]
pub struct Allowlist {
    addresses: BTreeSet<String>,
    domains: BTreeSet<String>,
}

/// The serialized entries of an [`Allowlist`], before normalisation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistEntries {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
}

impl From<AllowlistEntries> for Allowlist {
    fn from(entries: AllowlistEntries) -> Self {
        let list = entries
            .addresses
            .iter()
            .fold(Allowlist::new(), |list, a| list.with_address(a));
        entries
            .domains
            .iter()
            .fold(list, |list, d| list.with_domain(d))
    }
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

    /// The allowed addresses (normalised), ascending.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.addresses.iter().map(String::as_str)
    }

    /// The allowed domains (lower-case), ascending.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }

    /// At most [`MAX_ALLOWLIST_ENTRIES`] entries, none blank, none holding NUL, none
    /// longer than an email address.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.addresses.len() + self.domains.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(ValidationError::new(
                "settings.allowlist",
                format!("has more than {MAX_ALLOWLIST_ENTRIES} entries"),
            ));
        }
        for address in &self.addresses {
            require_text_max("settings.allowlist.addresses", address, MAX_EMAIL_BYTES)?;
        }
        for domain in &self.domains {
            require_text_max("settings.allowlist.domains", domain, MAX_EMAIL_BYTES)?;
        }
        Ok(())
    }
}

/// The settings of one workspace.
///
/// [`WorkspaceSettings`] is plain data that a [`Workspace`](crate::model::Workspace)
/// row carries and stores persist as JSON. Its serialized form is stable:
///
/// - the time zone is its IANA name (`"Europe/Berlin"`), durations are whole seconds
///   (`out_of_office_pause_secs`), channels and policies are their storage names;
/// - **unknown fields are rejected.** A field this version does not know may be a
///   safety setting written by a newer version (a tighter allowlist, say); ignoring it
///   would send what the newer version would hold back, so an older reader fails the
///   read instead, and engines fail closed on a failed read;
/// - **missing fields take their documented defaults** (those of
///   [`WorkspaceSettings::default`]), so settings saved before a field existed still
///   read.
///
/// Stores call [`WorkspaceSettings::validate`] on every save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkspaceSettings {
    /// Time zone for contacts without one.
    #[serde(with = "super::time_zone_serde")]
    pub default_time_zone: Tz,
    /// Most messages a contact may receive per local day, across channels
    /// (1 to [`MAX_DAILY_TOUCH_LIMIT`]).
    pub daily_touch_limit: u32,
    /// Whether a contact may run two sequences at once.
    pub parallel_sequences: ParallelSequencePolicy,
    /// Daily send cap per channel (0 to [`MAX_DAILY_CAP`]; 0 sends nothing on that
    /// channel); a channel missing here uses `default_daily_cap`.
    pub daily_send_caps: BTreeMap<Channel, u32>,
    /// Daily send cap for channels not listed in `daily_send_caps` (0 to
    /// [`MAX_DAILY_CAP`]).
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
    /// How long an out-of-office answer without a return date pauses an enrollment
    /// (positive, at most [`MAX_OUT_OF_OFFICE_PAUSE_DAYS`]); whole seconds.
    #[serde(rename = "out_of_office_pause_secs", with = "seconds")]
    pub out_of_office_pause: Duration,
    /// Whether an error-severity send-health anomaly pauses the channel.
    pub pause_channel_on_error_anomaly: bool,
    /// Whether a new contact is enriched automatically (off by default: enrichment
    /// spends the workspace's provider budget).
    pub auto_enrich: bool,
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
            auto_enrich: false,
            channels: BTreeMap::new(),
        }
    }
}

/// `Duration` as whole seconds.
mod seconds {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = i64::deserialize(d)?;
        Duration::try_seconds(secs).ok_or_else(|| serde::de::Error::custom("seconds out of range"))
    }
}

impl WorkspaceSettings {
    /// The daily cap for `channel`.
    #[must_use]
    pub fn daily_cap(&self, channel: Channel) -> u32 {
        self.daily_send_caps
            .get(&channel)
            .copied()
            .unwrap_or(self.default_daily_cap)
    }

    /// The rules checked on every save: the touch limit is 1 to
    /// [`MAX_DAILY_TOUCH_LIMIT`], caps at most [`MAX_DAILY_CAP`], the out-of-office
    /// pause positive and at most [`MAX_OUT_OF_OFFICE_PAUSE_DAYS`], the allowlist
    /// [valid](Allowlist::validate), every channel configuration names a provider and
    /// holds no NUL.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_DAILY_TOUCH_LIMIT).contains(&self.daily_touch_limit) {
            return Err(ValidationError::new(
                "settings.daily_touch_limit",
                format!("must be between 1 and {MAX_DAILY_TOUCH_LIMIT}"),
            ));
        }
        let cap_rule = format!("must be at most {MAX_DAILY_CAP}");
        if self.default_daily_cap > MAX_DAILY_CAP {
            return Err(ValidationError::new("settings.default_daily_cap", cap_rule));
        }
        if self.daily_send_caps.values().any(|&c| c > MAX_DAILY_CAP) {
            return Err(ValidationError::new("settings.daily_send_caps", cap_rule));
        }
        if self.out_of_office_pause <= Duration::zero()
            || self.out_of_office_pause > Duration::days(MAX_OUT_OF_OFFICE_PAUSE_DAYS)
        {
            return Err(ValidationError::new(
                "settings.out_of_office_pause",
                format!("must be positive and at most {MAX_OUT_OF_OFFICE_PAUSE_DAYS} days"),
            ));
        }
        if let Some(allowlist) = &self.allowlist {
            allowlist.validate()?;
        }
        for config in self.channels.values() {
            require_text_max(
                "settings.channels.provider",
                &config.provider,
                MAX_KEY_BYTES,
            )?;
            no_nul_map("settings.channels.params", &config.params)?;
        }
        Ok(())
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

    /// Turns automatic enrichment of new contacts on or off.
    #[must_use]
    pub fn with_auto_enrich(mut self, on: bool) -> Self {
        self.auto_enrich = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretRef;

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

    #[test]
    fn settings_round_trip_through_json_with_names_and_seconds() {
        let secret = SecretRef::parse("secret://resend/api-key:3").expect("valid reference");
        let settings = WorkspaceSettings::default()
            .with_default_time_zone(chrono_tz::Europe::Berlin)
            .with_daily_cap(Channel::Email, 50)
            .with_allowlist(Allowlist::new().with_domain("example.com"))
            .with_auto_enrich(true)
            .with_channel(
                Channel::Email,
                ChannelConfig::new("resend").with_secret("api_key", secret),
            );
        let json = serde_json::to_value(&settings).expect("serializes");
        assert_eq!(json["default_time_zone"], "Europe/Berlin");
        assert_eq!(json["out_of_office_pause_secs"], 7 * 24 * 3600);
        assert_eq!(json["daily_send_caps"]["email"], 50);
        assert_eq!(json["parallel_sequences"], "refuse");
        assert_eq!(
            json["channels"]["email"]["secrets"]["api_key"],
            "secret://resend/api-key:3"
        );
        let back: WorkspaceSettings = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, settings);
    }

    #[test]
    fn unknown_fields_are_rejected_and_missing_ones_default() {
        let unknown = serde_json::json!({ "dry_run": true, "allowlist_v2": [] });
        assert!(serde_json::from_value::<WorkspaceSettings>(unknown).is_err());
        let sparse: WorkspaceSettings =
            serde_json::from_value(serde_json::json!({ "dry_run": true })).expect("reads");
        assert_eq!(sparse, WorkspaceSettings::default().with_dry_run(true));
        let bad_zone = serde_json::json!({ "default_time_zone": "Mars/Olympus" });
        assert!(serde_json::from_value::<WorkspaceSettings>(bad_zone).is_err());
    }

    #[test]
    fn deserialized_allowlists_are_normalised() {
        let list: Allowlist = serde_json::from_value(serde_json::json!({
            "addresses": ["Boss@Example.com"],
            "domains": [" Test.Example "]
        }))
        .expect("reads");
        assert_eq!(
            list,
            Allowlist::new()
                .with_address("boss@example.com")
                .with_domain("test.example")
        );
    }

    #[test]
    fn validation_bounds_limits_and_caps() {
        assert!(WorkspaceSettings::default().validate().is_ok());
        let field = |s: WorkspaceSettings| s.validate().map_err(|e| e.field().to_owned());
        assert_eq!(
            field(WorkspaceSettings::default().with_daily_touch_limit(0)),
            Err("settings.daily_touch_limit".to_owned())
        );
        assert_eq!(
            field(WorkspaceSettings::default().with_daily_touch_limit(MAX_DAILY_TOUCH_LIMIT + 1)),
            Err("settings.daily_touch_limit".to_owned())
        );
        assert_eq!(
            field(WorkspaceSettings::default().with_daily_cap(Channel::Sms, MAX_DAILY_CAP + 1)),
            Err("settings.daily_send_caps".to_owned())
        );
        assert!(
            WorkspaceSettings::default()
                .with_daily_cap(Channel::Sms, 0)
                .validate()
                .is_ok(),
            "a zero cap turns a channel off"
        );
        let pause = WorkspaceSettings {
            out_of_office_pause: Duration::zero(),
            ..WorkspaceSettings::default()
        };
        assert_eq!(field(pause), Err("settings.out_of_office_pause".to_owned()));
        assert_eq!(
            field(
                WorkspaceSettings::default().with_channel(Channel::Email, ChannelConfig::new(" "))
            ),
            Err("settings.channels.provider".to_owned())
        );
        assert_eq!(
            field(WorkspaceSettings::default().with_allowlist(Allowlist::new().with_address(" "))),
            Err("settings.allowlist.addresses".to_owned())
        );
    }
}
