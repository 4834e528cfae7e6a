//! Periodic jobs on cron schedules, enqueued exactly once per scheduled instant.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{StoreError, ValidationError};
use crate::ids::WorkspaceId;
use crate::jobs::worker::{idle_wait, is_shutdown};
use crate::model::Job;
use crate::store::JobStore;

/// The workspace that holds periodic jobs spanning every tenant (the nil UUID). No
/// tenant data lives in it; a worker with [`Scope::All`](crate::store::Scope::All)
/// claims its jobs like any other.
pub const SYSTEM_WORKSPACE: WorkspaceId = WorkspaceId::from_uuid(uuid::Uuid::nil());

/// Built-in periodic job: expire approval items past their `expires_at` in every
/// workspace and cancel their messages
/// ([`ExpireApprovalsHandler`](crate::outreach::approvals::ExpireApprovalsHandler)).
pub const EXPIRE_APPROVALS: &str = "approvals.expire";

/// Built-in periodic job: scan workspaces for anomalies
/// ([`AnomalyScanHandler`](crate::anomaly::AnomalyScanHandler)).
pub const ANOMALY_SCAN: &str = "anomalies.scan";

/// The most instants of one periodic job a single tick enqueues (the latest ones).
pub const MAX_INSTANTS_PER_TICK: usize = 100;

/// A job enqueued on a cron schedule.
///
/// The job lands in [`SYSTEM_WORKSPACE`] unless [`with_workspace`](Self::with_workspace)
/// names a tenant. Its payload is an object holding `scheduled_at` (RFC 3339) and the
/// fields of [`with_payload`](Self::with_payload) (a non-object payload is kept under
/// `params`). Its idempotency key is `"{kind}@{scheduled_at}"`, so any number of
/// schedulers ticking over the same instant enqueue it once; a kind must therefore be
/// scheduled at most once per workspace.
#[derive(Debug, Clone)]
pub struct PeriodicJob {
    kind: String,
    schedule: cron::Schedule,
    workspace_id: WorkspaceId,
    payload: Value,
    max_attempts: i32,
}

impl PeriodicJob {
    /// A job of `kind` on `cron` (the `cron` crate's syntax, in UTC, with a seconds
    /// field first: `"0 */5 * * * *"` is every five minutes). A blank kind or a bad
    /// expression is `Invalid`.
    pub fn new(kind: impl Into<String>, cron: &str) -> Result<Self, ValidationError> {
        let kind = kind.into();
        if kind.trim().is_empty() {
            return Err(ValidationError::new(
                "periodic_job.kind",
                "must not be empty",
            ));
        }
        let schedule = cron::Schedule::from_str(cron)
            .map_err(|e| ValidationError::new("periodic_job.cron", e.to_string()))?;
        Ok(Self {
            kind,
            schedule,
            workspace_id: SYSTEM_WORKSPACE,
            payload: Value::Object(Map::new()),
            max_attempts: Job::DEFAULT_MAX_ATTEMPTS,
        })
    }

    /// Enqueues into `workspace_id` instead of [`SYSTEM_WORKSPACE`].
    #[must_use]
    pub fn with_workspace(mut self, workspace_id: WorkspaceId) -> Self {
        self.workspace_id = workspace_id;
        self
    }

    /// Adds `payload` to every enqueued job.
    #[must_use]
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the attempts each run gets (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The job kind.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The workspace its jobs land in.
    #[must_use]
    pub fn workspace_id(&self) -> WorkspaceId {
        self.workspace_id
    }

    /// Scheduled instants in `(after, until]`, ascending, at most
    /// [`MAX_INSTANTS_PER_TICK`] (the latest ones).
    #[must_use]
    pub fn instants_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut instants: Vec<_> = self
            .schedule
            .after(&after)
            .take_while(|t| *t <= until)
            .collect();
        let excess = instants.len().saturating_sub(MAX_INSTANTS_PER_TICK);
        instants.drain(..excess);
        instants
    }

    /// The idempotency key of the run scheduled at `instant`.
    #[must_use]
    pub fn key(&self, instant: DateTime<Utc>) -> String {
        format!("{}@{}", self.kind, rfc3339(instant))
    }

    /// The job of the run scheduled at `instant`, due then.
    pub fn job_at(&self, instant: DateTime<Utc>) -> Result<Job, ValidationError> {
        let mut payload = match &self.payload {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => Map::from_iter([("params".to_owned(), other.clone())]),
        };
        payload.insert("scheduled_at".into(), Value::String(rfc3339(instant)));
        let job = Job::new(
            self.workspace_id,
            self.kind.clone(),
            Value::Object(payload),
            instant,
        )?
        .with_idempotency_key(self.key(instant))
        .with_max_attempts(self.max_attempts);
        job.validate()?;
        Ok(job)
    }
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TickReport {
    /// Jobs this tick created.
    pub enqueued: Vec<Job>,
    /// Runs already enqueued (by an earlier tick or another scheduler).
    pub already_enqueued: usize,
}

/// Enqueues [`PeriodicJob`]s when they fall due.
///
/// A tick at `now` enqueues every instant in `(now - lookback, now]`, where `lookback`
/// is twice the tick interval, so a late or skipped tick is caught up once and an
/// instant further back is not (a scheduler that was down for a day does not replay
/// the day). Enqueues are idempotent on the instant's key, so several schedulers may
/// tick the same jobs concurrently: each run is enqueued once.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    jobs: Vec<PeriodicJob>,
    tick_interval: Duration,
}

impl Scheduler {
    /// A scheduler of `jobs` ticking every `tick_interval` (positive). Two jobs of the
    /// same kind in the same workspace are `Invalid`, as their keys would collide.
    pub fn new(
        store: Arc<dyn JobStore>,
        clock: Arc<dyn Clock>,
        jobs: Vec<PeriodicJob>,
        tick_interval: Duration,
    ) -> Result<Self, ValidationError> {
        if tick_interval.is_zero() {
            return Err(ValidationError::new(
                "scheduler.tick_interval",
                "must be positive",
            ));
        }
        let mut seen = BTreeSet::new();
        for job in &jobs {
            if !seen.insert((job.workspace_id, job.kind.as_str())) {
                return Err(ValidationError::new(
                    "scheduler.jobs",
                    format!("{} is scheduled twice in one workspace", job.kind),
                ));
            }
        }
        Ok(Self {
            store,
            clock,
            jobs,
            tick_interval,
        })
    }

    /// How far back a tick looks: twice the tick interval.
    #[must_use]
    pub fn lookback(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.tick_interval.saturating_mul(2))
            .unwrap_or(chrono::Duration::MAX)
    }

    /// Enqueues every run due in `(now - lookback, now]`, `now` being the clock's, that
    /// is not enqueued yet.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let now = self.clock.now();
        let after = now
            .checked_sub_signed(self.lookback())
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut report = TickReport::default();
        for periodic in &self.jobs {
            for instant in periodic.instants_between(after, now) {
                let inserted = self.store.enqueue_job(&periodic.job_at(instant)?).await?;
                if inserted.created {
                    report.enqueued.push(inserted.value);
                } else {
                    report.already_enqueued += 1;
                }
            }
        }
        Ok(report)
    }

    /// Ticks at the clock's now every tick interval until `shutdown` turns `true` (or
    /// its sender is dropped). Failed ticks are logged; the next tick catches up.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        while !is_shutdown(&shutdown) {
            let span = tracing::info_span!("scheduler.tick", jobs = self.jobs.len());
            match self.tick().instrument(span).await {
                Ok(report) if !report.enqueued.is_empty() => {
                    tracing::info!(enqueued = report.enqueued.len(), "enqueued periodic jobs");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "scheduler tick failed"),
            }
            idle_wait(&mut shutdown, self.tick_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
    }

    #[test]
    fn instants_are_in_the_half_open_window() {
        let job = PeriodicJob::new(ANOMALY_SCAN, "0 */5 * * * *").unwrap();
        assert_eq!(
            job.instants_between(t(9, 0, 0), t(9, 10, 0)),
            [t(9, 5, 0), t(9, 10, 0)]
        );
        assert!(job.instants_between(t(9, 0, 1), t(9, 4, 59)).is_empty());
        let every_second = PeriodicJob::new("x", "* * * * * *").unwrap();
        let many = every_second.instants_between(t(9, 0, 0), t(10, 0, 0));
        assert_eq!(many.len(), MAX_INSTANTS_PER_TICK);
        assert_eq!(many.last(), Some(&t(10, 0, 0)));
    }

    #[test]
    fn jobs_carry_the_instant_in_key_and_payload() {
        let ws = WorkspaceId::new();
        let job = PeriodicJob::new(ANOMALY_SCAN, "0 0 * * * *")
            .unwrap()
            .with_workspace(ws)
            .with_payload(serde_json::json!({ "workspaces": [] }))
            .job_at(t(9, 0, 0))
            .unwrap();
        assert_eq!(
            job.idempotency_key.as_deref(),
            Some("anomalies.scan@2026-01-05T09:00:00Z")
        );
        assert_eq!(job.payload["scheduled_at"], "2026-01-05T09:00:00Z");
        assert_eq!(job.payload["workspaces"], serde_json::json!([]));
        assert_eq!((job.workspace_id, job.run_at), (ws, t(9, 0, 0)));
    }

    #[test]
    fn bad_input_is_invalid() {
        assert!(PeriodicJob::new("x", "not cron").is_err());
        assert!(PeriodicJob::new(" ", "0 * * * * *").is_err());
        assert!(
            PeriodicJob::new("x", "0 * * * * *")
                .unwrap()
                .with_max_attempts(0)
                .job_at(t(9, 0, 0))
                .is_err()
        );
    }
}
