//! The anomaly scanner: loads counts from the store, applies the rules, raises,
//! acknowledges and resolves anomalies, and answers whether a channel is paused.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::anomaly::notify::LogAnomalyNotifier;
use crate::anomaly::rules::{
    AnomalyThresholds, Finding, SendCounts, bounce_spike, failure_rate, low_confidence,
    quota_exhausted,
};
use crate::approval::AnomalyNotifier;
use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{AnomalyId, UserId, WorkspaceId};
use crate::jobs::{JobContext, JobError, JobHandler, SYSTEM_WORKSPACE};
use crate::model::{ActivityKind, Anomaly, AnomalyStatus, ApprovalItem, Channel, Job};
use crate::outreach::dispatch::pauses_channel;
use crate::outreach::settings::{SettingsError, SettingsProvider};
use crate::store::AnomalyScannerStore;
use crate::store::{ActivityFilter, Inserted, Page};

/// Compare-and-set rounds before giving up on a busy anomaly.
const MAX_CAS_ATTEMPTS: usize = 3;

/// Why a scan, a pause check, acknowledging or resolving an anomaly failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnomalyError {
    /// The store failed (`NotFound` for an unknown id, or `VersionConflict` after
    /// repeated lost races).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The workspace's settings could not be read: nothing is scanned, and a pause
    /// check answers this error rather than "not paused".
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A resolved anomaly cannot be acknowledged.
    #[error("anomaly {id} is already resolved")]
    AlreadyResolved {
        /// The anomaly.
        id: AnomalyId,
    },
}

/// Scans a workspace's recent activity with the rules of [`crate::anomaly`].
#[derive(Debug, Clone)]
pub struct AnomalyScanner {
    store: Arc<dyn AnomalyScannerStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
    thresholds: AnomalyThresholds,
    notifier: Arc<dyn AnomalyNotifier>,
}

impl AnomalyScanner {
    /// A scanner over `store`, timed by `clock`, with default thresholds; `settings`
    /// gives the daily caps and whether error anomalies pause channels. Raised
    /// anomalies go to the [`LogAnomalyNotifier`] until
    /// [`AnomalyScanner::with_notifier`] names another.
    #[must_use]
    pub fn new(
        store: Arc<dyn AnomalyScannerStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
            thresholds: AnomalyThresholds::default(),
            notifier: Arc::new(LogAnomalyNotifier),
        }
    }

    /// Tells `notifier` about every anomaly a scan raises (once per anomaly: a scan
    /// that finds it still open does not announce it again). A failing notifier is
    /// logged and loses nothing: the anomaly stays open in the store.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn AnomalyNotifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses `thresholds`.
    #[must_use]
    pub fn with_thresholds(mut self, thresholds: AnomalyThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// The thresholds.
    #[must_use]
    pub fn thresholds(&self) -> &AnomalyThresholds {
        &self.thresholds
    }

    /// What the rules find in `workspace_id` at the clock's now, without raising
    /// anything. Channels are scanned in [`Channel::ALL`] order, except manual tasks
    /// (nothing is sent on them); the confidence finding comes last.
    pub async fn findings(&self, workspace_id: WorkspaceId) -> Result<Vec<Finding>, AnomalyError> {
        self.findings_at(workspace_id, self.clock.now()).await
    }

    /// [`AnomalyScanner::findings`] at `now`.
    async fn findings_at(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Finding>, AnomalyError> {
        let th = &self.thresholds;
        let settings = self.settings.settings(workspace_id).await?;
        let mut findings = Vec::new();
        for &channel in Channel::ALL {
            if channel == Channel::ManualTask {
                continue;
            }
            let hour_ago = now - th.failure_window;
            let sent = self
                .count(
                    workspace_id,
                    ActivityKind::MessageSent,
                    channel,
                    hour_ago,
                    None,
                )
                .await?;
            let failed = self
                .count(
                    workspace_id,
                    ActivityKind::SendFailed,
                    channel,
                    hour_ago,
                    None,
                )
                .await?;
            findings.extend(failure_rate(channel, sent, failed, th));

            let recent_start = now - th.bounce_window;
            let baseline_start = recent_start - th.bounce_baseline_window;
            let recent = self
                .send_counts(workspace_id, channel, recent_start, None)
                .await?;
            if recent.sent > 0 {
                let baseline = self
                    .send_counts(workspace_id, channel, baseline_start, Some(recent_start))
                    .await?;
                findings.extend(bounce_spike(channel, recent, baseline, th));
            }

            let used = self
                .store
                .quota_usage(workspace_id, &settings.send_quota_key(channel, now))
                .await?;
            findings.extend(quota_exhausted(
                channel,
                used,
                settings.daily_cap(channel),
                th,
            ));
        }
        let since = now - th.confidence_window;
        let confidences: Vec<f64> = self
            .all_approvals(workspace_id)
            .await?
            .iter()
            .filter(|item| item.created_at >= since && item.created_at <= now)
            .filter_map(|item| item.confidence)
            .collect();
        findings.extend(low_confidence(&confidences, th));
        Ok(findings)
    }

    /// Scans `workspace_id` at the clock's now and raises every finding. An anomaly
    /// already open under the same dedup key is returned with `created: false` and left
    /// unchanged; each new one is handed to the notifier.
    pub async fn scan(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<Inserted<Anomaly>>, AnomalyError> {
        let now = self.clock.now();
        let mut raised = Vec::new();
        for finding in self.findings_at(workspace_id, now).await? {
            let anomaly = finding
                .to_anomaly(workspace_id, now)
                .map_err(StoreError::from)?;
            let inserted = self.store.raise_anomaly(&anomaly).await?;
            if inserted.created {
                tracing::warn!(
                    workspace = %workspace_id,
                    rule = finding.rule,
                    severity = %finding.severity,
                    "anomaly raised"
                );
                if let Err(e) = self.notifier.anomaly_raised(&inserted.value).await {
                    tracing::warn!(
                        workspace = %workspace_id,
                        anomaly = %inserted.value.id,
                        kind = ?e.kind(),
                        error = %e,
                        "anomaly notifier failed; the anomaly stays open"
                    );
                }
            }
            raised.push(inserted);
        }
        Ok(raised)
    }

    /// Marks an active anomaly acknowledged by `user`. Acknowledging an acknowledged
    /// one returns it unchanged; a resolved one is [`AnomalyError::AlreadyResolved`].
    pub async fn acknowledge(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
        user: UserId,
    ) -> Result<Anomaly, AnomalyError> {
        let now = self.clock.now();
        self.transition(workspace_id, id, |mut anomaly| match anomaly.status {
            AnomalyStatus::Resolved => Err(AnomalyError::AlreadyResolved { id }),
            AnomalyStatus::Acknowledged => Ok(None),
            AnomalyStatus::Active => {
                anomaly.status = AnomalyStatus::Acknowledged;
                anomaly.acknowledged_by = Some(user);
                anomaly.updated_at = now;
                Ok(Some(anomaly))
            }
        })
        .await
    }

    /// Resolves an open anomaly at the clock's now; resolving a resolved one returns it
    /// unchanged. Afterwards a scan that still sees the condition raises a new one.
    pub async fn resolve(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
    ) -> Result<Anomaly, AnomalyError> {
        let now = self.clock.now();
        self.transition(workspace_id, id, |mut anomaly| {
            if anomaly.status == AnomalyStatus::Resolved {
                return Ok(None);
            }
            anomaly.status = AnomalyStatus::Resolved;
            anomaly.resolved_at = Some(now);
            anomaly.updated_at = now;
            Ok(Some(anomaly))
        })
        .await
    }

    /// Whether sends on `channel` are paused for `workspace_id`: the workspace's
    /// `pause_channel_on_error_anomaly` is on and an open (active or acknowledged)
    /// Error-severity anomaly of a [`SEND_HEALTH_RULES`](crate::anomaly::SEND_HEALTH_RULES) rule names the channel.
    pub async fn is_channel_paused(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
    ) -> Result<bool, AnomalyError> {
        if !self
            .settings
            .settings(workspace_id)
            .await?
            .pause_channel_on_error_anomaly
        {
            return Ok(false);
        }
        Ok(self
            .open_anomalies(workspace_id)
            .await?
            .iter()
            .any(|a| pauses_channel(a, channel)))
    }

    /// Every open anomaly of the workspace, ascending by id.
    pub async fn open_anomalies(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let mut all = Vec::new();
        let mut page = Page::first(Page::<AnomalyId>::MAX_LIMIT);
        loop {
            let rows = self.store.list_anomalies(workspace_id, true, page).await?;
            let full = rows.len() == page.limit as usize;
            let last = rows.last().map(|a| a.id);
            all.extend(rows);
            match last {
                Some(id) if full => page = Page::after(id, page.limit),
                _ => return Ok(all),
            }
        }
    }

    /// Applies `change` with compare-and-set, re-reading after a lost race.
    /// `change` answers `None` when nothing needs storing.
    async fn transition(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
        change: impl Fn(Anomaly) -> Result<Option<Anomaly>, AnomalyError>,
    ) -> Result<Anomaly, AnomalyError> {
        let mut lost = None;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.store.get_anomaly(workspace_id, id).await?;
            let Some(next) = change(current.clone())? else {
                return Ok(current);
            };
            match self.store.update_anomaly(&next).await {
                Err(err) if err.kind() == StoreErrorKind::VersionConflict => lost = Some(err),
                other => return Ok(other?),
            }
        }
        Err(lost.map_or_else(
            || AnomalyError::Store(StoreError::not_found(AnomalyId::ENTITY, id)),
            AnomalyError::Store,
        ))
    }

    async fn count(
        &self,
        workspace_id: WorkspaceId,
        kind: ActivityKind,
        channel: Channel,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let filter = ActivityFilter {
            kinds: vec![kind],
            channel: Some(channel),
            since: Some(since),
            until,
            ..ActivityFilter::default()
        };
        self.store.count_activities(workspace_id, &filter).await
    }

    async fn send_counts(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<SendCounts, StoreError> {
        Ok(SendCounts {
            sent: self
                .count(
                    workspace_id,
                    ActivityKind::MessageSent,
                    channel,
                    since,
                    until,
                )
                .await?,
            bounced: self
                .count(workspace_id, ActivityKind::Bounced, channel, since, until)
                .await?,
        })
    }

    /// Every approval item of the workspace (the store lists by id only).
    async fn all_approvals(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let mut all = Vec::new();
        let mut page = Page::first(Page::<()>::MAX_LIMIT);
        loop {
            let rows = self.store.list_approvals(workspace_id, None, page).await?;
            let full = rows.len() == page.limit as usize;
            let last = rows.last().map(|a| a.id);
            all.extend(rows);
            match last {
                Some(id) if full => page = Page::after(id, page.limit),
                _ => return Ok(all),
            }
        }
    }
}

/// Handles [`ANOMALY_SCAN`](crate::jobs::ANOMALY_SCAN) jobs at the scanner's clock's now.
///
/// The workspaces to scan come from the payload's `"workspaces"` array of ids (the
/// store cannot list workspaces); without it, the job's own workspace is scanned. A
/// job in [`SYSTEM_WORKSPACE`] without a list, or a malformed list, fails permanently.
/// Every workspace is scanned even if one fails; the first failure then decides the
/// outcome (scans are idempotent, so a retry is harmless).
#[derive(Debug, Clone)]
pub struct AnomalyScanHandler {
    scanner: AnomalyScanner,
}

impl AnomalyScanHandler {
    /// A handler scanning with `scanner`.
    #[must_use]
    pub fn new(scanner: AnomalyScanner) -> Self {
        Self { scanner }
    }

    /// The workspaces a job asks to scan.
    pub fn workspaces(job: &Job) -> Result<Vec<WorkspaceId>, JobError> {
        match job.payload.get("workspaces") {
            None | Some(Value::Null) if job.workspace_id == SYSTEM_WORKSPACE => Err(
                JobError::permanent("a system anomaly scan needs a \"workspaces\" list"),
            ),
            None | Some(Value::Null) => Ok(vec![job.workspace_id]),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| {
                    id.as_str()
                        .and_then(|s| WorkspaceId::from_str(s).ok())
                        .ok_or_else(|| JobError::permanent("\"workspaces\" holds a non-id"))
                })
                .collect(),
            Some(_) => Err(JobError::permanent("\"workspaces\" must be a list of ids")),
        }
    }
}

#[async_trait]
impl JobHandler for AnomalyScanHandler {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let mut first_error = None;
        for workspace_id in Self::workspaces(job)? {
            if let Err(err) = self.scanner.scan(workspace_id).await {
                tracing::warn!(workspace = %workspace_id, error = %err, "anomaly scan failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), |err| Err(err.into()))
    }
}

impl From<AnomalyError> for JobError {
    fn from(err: AnomalyError) -> Self {
        match err {
            AnomalyError::Store(e) => e.into(),
            AnomalyError::Settings(e) if e.is_retryable() => JobError::retryable(e.to_string()),
            other => JobError::permanent(other.to_string()),
        }
    }
}
