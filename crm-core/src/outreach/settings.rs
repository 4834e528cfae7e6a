//! Where engines get a workspace's settings: the [`SettingsProvider`] seam, with a
//! store-backed provider ([`StoreSettings`]) and fixed values ([`StaticSettings`]).
//!
//! The settings types themselves are model types
//! ([`crate::model::WorkspaceSettings`] and its parts), re-exported
//! here where engines and hosts have always found them.
//!
//! # Failing closed
//! A read that fails is a [`SettingsError`], never a default: defaults would mean
//! `dry_run: false` and no allowlist, that is, real sends to anyone. Every engine
//! stops the workspace's work when its settings cannot be read (the dispatcher
//! reschedules the workspace's claimed messages a short while later and sends none,
//! the runner skips the workspace for the tick, the enroller returns the error).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{BoxError, StoreError, StoreErrorKind, ValidationError};
use crate::ids::WorkspaceId;
use crate::model::Channel;
pub use crate::model::{Allowlist, MeetingBookedPolicy, ParallelSequencePolicy, WorkspaceSettings};
use crate::store::{QuotaKey, WorkspaceStore};

/// The daily send quota counter of `channel` for the local `day`: `send:<channel>`.
/// The dispatcher consumes it, the forecast and the anomaly scanner read it.
#[must_use]
pub fn send_quota_key(channel: Channel, day: NaiveDate) -> QuotaKey {
    QuotaKey::new(format!("send:{}", channel.as_str()), day)
}

// Defined here rather than with the type: a quota key is a port type, and the model
// does not reach the ports.
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
}

/// Why a workspace's settings could not be had. Names the workspace; never carries a
/// setting's value (channel credentials are references anyway).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The workspace is not registered, so it has no settings (an unknown workspace
    /// never gets defaults).
    #[error("workspace {workspace_id} is not registered; it has no settings")]
    UnknownWorkspace {
        /// The workspace.
        workspace_id: WorkspaceId,
    },
    /// The settings cannot be read now (store unreachable, timeout); a later read may
    /// succeed.
    #[error("settings of workspace {workspace_id} cannot be read now")]
    Unavailable {
        /// The workspace.
        workspace_id: WorkspaceId,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The stored settings break a rule (written by hand, or by another version).
    #[error("settings of workspace {workspace_id} are invalid")]
    Invalid {
        /// The workspace.
        workspace_id: WorkspaceId,
        /// The rule broken.
        #[source]
        source: ValidationError,
    },
    /// Reading failed for good (a backend error that retrying will not fix).
    #[error("settings of workspace {workspace_id} cannot be read")]
    Failed {
        /// The workspace.
        workspace_id: WorkspaceId,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl SettingsError {
    /// Maps a store error from reading `workspace_id`'s row: `NotFound` is
    /// [`UnknownWorkspace`](Self::UnknownWorkspace), a retryable error
    /// [`Unavailable`](Self::Unavailable), anything else [`Failed`](Self::Failed).
    #[must_use]
    pub fn from_store(workspace_id: WorkspaceId, error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::NotFound => Self::UnknownWorkspace { workspace_id },
            _ if error.is_retryable() => Self::Unavailable {
                workspace_id,
                source: Box::new(error),
            },
            _ => Self::Failed {
                workspace_id,
                source: Box::new(error),
            },
        }
    }

    /// The workspace whose settings were asked for.
    #[must_use]
    pub fn workspace_id(&self) -> WorkspaceId {
        match self {
            Self::UnknownWorkspace { workspace_id }
            | Self::Unavailable { workspace_id, .. }
            | Self::Invalid { workspace_id, .. }
            | Self::Failed { workspace_id, .. } => *workspace_id,
        }
    }

    /// Whether simply reading again later may succeed (an unknown workspace or invalid
    /// settings need someone to act first).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where engines get a workspace's settings. [`StoreSettings`] reads the workspace
/// registry; [`StaticSettings`] serves fixed values; hosts may implement it over their
/// own configuration.
///
/// # Contract
/// An implementation MUST return an error, never defaults, when it cannot say what the
/// workspace's settings are: engines fail closed on an error (see the
/// [module docs](self)). Errors name the workspace and never a secret.
#[async_trait]
pub trait SettingsProvider: Send + Sync + Debug + 'static {
    /// The settings of `workspace_id`.
    async fn settings(&self, workspace_id: WorkspaceId)
    -> Result<WorkspaceSettings, SettingsError>;
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
    async fn settings(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<WorkspaceSettings, SettingsError> {
        Ok(self
            .overrides
            .get(&workspace_id)
            .unwrap_or(&self.default)
            .clone())
    }
}

/// The settings of each workspace as its registry row holds them
/// ([`WorkspaceStore::get_workspace`]), read on every call so a saved change takes
/// effect at the next read. An unregistered workspace is
/// [`SettingsError::UnknownWorkspace`]; stored settings that fail
/// [validation](WorkspaceSettings::validate) are [`SettingsError::Invalid`].
#[derive(Debug, Clone)]
pub struct StoreSettings {
    store: Arc<dyn WorkspaceStore>,
}

impl StoreSettings {
    /// Settings read from `store`'s workspace registry.
    #[must_use]
    pub fn new(store: Arc<dyn WorkspaceStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl SettingsProvider for StoreSettings {
    async fn settings(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<WorkspaceSettings, SettingsError> {
        let workspace = self
            .store
            .get_workspace(workspace_id)
            .await
            .map_err(|e| SettingsError::from_store(workspace_id, e))?;
        workspace
            .settings
            .validate()
            .map_err(|source| SettingsError::Invalid {
                workspace_id,
                source,
            })?;
        Ok(workspace.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_name_the_workspace_and_say_if_retrying_helps() {
        let ws = WorkspaceId::new();
        let unknown = SettingsError::from_store(ws, StoreError::not_found("workspace", ws));
        assert!(matches!(unknown, SettingsError::UnknownWorkspace { .. }));
        assert!(!unknown.is_retryable());
        assert!(unknown.to_string().contains(&ws.to_string()));
        let down = SettingsError::from_store(
            ws,
            StoreError::Unavailable {
                backend: "test",
                source: "connection refused".into(),
            },
        );
        assert!(down.is_retryable());
        assert_eq!(down.workspace_id(), ws);
        let broken = SettingsError::from_store(ws, StoreError::conflict("workspace", "x"));
        assert!(matches!(broken, SettingsError::Failed { .. }));
        assert!(!broken.is_retryable());
    }

    #[test]
    fn quota_keys_follow_the_workspace_day() {
        let settings =
            WorkspaceSettings::default().with_default_time_zone(chrono_tz::Pacific::Auckland);
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 12, 0, 0)
            .single()
            .expect("valid time");
        let key = settings.send_quota_key(Channel::Email, now);
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).expect("valid day");
        assert_eq!(key, send_quota_key(Channel::Email, day));
    }
}
