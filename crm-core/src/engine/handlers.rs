//! The built-in job handlers and periodic jobs an engine registers, and the two
//! handlers that fan system-wide periodic jobs out to every workspace.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::anomaly::{AnomalyScanHandler, AnomalyScanner};
use crate::enrichment::{AutoEnrichment, ENRICH_CONTACT_JOB};
use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::intake::{IntakeService, PROCESS_JOB, ProcessIntakeJob};
use crate::jobs::{
    ANOMALY_SCAN, EXPIRE_APPROVALS, ExpireApprovalsHandler, HandlerRegistry, JobContext, JobError,
    JobHandler, PeriodicJob, SYSTEM_WORKSPACE,
};
use crate::model::Job;
use crate::outreach::approvals::ApprovalInbox;
use crate::outreach::inbound::InboundPipeline;
use crate::scoring::{
    RESCORE_ALL, RESCORE_CONTACT, RescoreAllHandler, RescoreContactHandler, Scorer,
};
use crate::store::JobStore;

use super::config::EngineConfig;
use super::workspaces::WorkspaceDirectory;

/// The periodic job that decays every workspace's scores: it enqueues one
/// [`RESCORE_ALL`] job per workspace of the [`WorkspaceDirectory`].
pub const SCORE_DECAY: &str = "engine.score_decay";

/// The periodic job that forgets webhook deliveries older than
/// [`EngineConfig::webhook_retention`], so the deduplication table stays small.
pub const PURGE_WEBHOOK_DELIVERIES: &str = "engine.purge_webhook_deliveries";

/// The job kinds every engine's worker runs, in ascending order. With an enrichment
/// waterfall ([`EngineBuilder::enrichment`](super::EngineBuilder::enrichment)) it also
/// runs [`ENRICH_CONTACT_JOB`].
pub const BUILT_IN_JOBS: [&str; 7] = [
    ANOMALY_SCAN,
    EXPIRE_APPROVALS,
    PURGE_WEBHOOK_DELIVERIES,
    SCORE_DECAY,
    PROCESS_JOB,
    RESCORE_ALL,
    RESCORE_CONTACT,
];

/// The parts the built-in handlers run on.
pub(crate) struct Parts<'a> {
    pub(crate) intake: &'a Arc<IntakeService>,
    pub(crate) scorer: &'a Scorer,
    pub(crate) inbox: &'a ApprovalInbox,
    pub(crate) anomalies: &'a AnomalyScanner,
    pub(crate) jobs: Arc<dyn JobStore>,
    pub(crate) workspaces: Arc<dyn WorkspaceDirectory>,
    pub(crate) pipeline: &'a InboundPipeline,
    pub(crate) webhook_retention: chrono::Duration,
    /// Auto-enrichment, when the host configured an enrichment waterfall.
    pub(crate) auto_enrich: Option<AutoEnrichment>,
}

/// Every built-in handler; `extra` (the host's) are registered after them, so a host
/// may replace a built-in one.
pub(crate) fn registry(
    parts: &Parts<'_>,
    extra: &[(String, Arc<dyn JobHandler>)],
) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new()
        .with(
            PROCESS_JOB,
            Arc::new(ProcessIntakeJob::new(parts.intake.clone())),
        )
        .with(
            RESCORE_CONTACT,
            Arc::new(RescoreContactHandler::new(parts.scorer.clone())),
        )
        .with(
            RESCORE_ALL,
            Arc::new(RescoreAllHandler::new(parts.scorer.clone())),
        )
        .with(
            EXPIRE_APPROVALS,
            Arc::new(ExpireApprovalsHandler::new(parts.inbox.clone())),
        )
        .with(
            ANOMALY_SCAN,
            Arc::new(ScanEveryWorkspace {
                scan: AnomalyScanHandler::new(parts.anomalies.clone()),
                scanner: parts.anomalies.clone(),
                workspaces: parts.workspaces.clone(),
            }),
        )
        .with(
            SCORE_DECAY,
            Arc::new(DecayEveryWorkspace {
                jobs: parts.jobs.clone(),
                workspaces: parts.workspaces.clone(),
            }),
        )
        .with(
            PURGE_WEBHOOK_DELIVERIES,
            Arc::new(PurgeDeliveries {
                pipeline: parts.pipeline.clone(),
                retention: parts.webhook_retention,
            }),
        );
    if let Some(auto) = &parts.auto_enrich {
        registry.register(ENRICH_CONTACT_JOB, Arc::new(auto.clone()));
    }
    for (kind, handler) in extra {
        registry.register(kind.clone(), handler.clone());
    }
    registry
}

/// The built-in periodic jobs, all in [`SYSTEM_WORKSPACE`], then the host's.
pub(crate) fn periodic_jobs(
    config: &EngineConfig,
    extra: &[PeriodicJob],
) -> Result<Vec<PeriodicJob>, (&'static str, ValidationError)> {
    let built_in = [
        (EXPIRE_APPROVALS, &config.approval_expiry_cron),
        (ANOMALY_SCAN, &config.anomaly_scan_cron),
        (SCORE_DECAY, &config.score_decay_cron),
        (PURGE_WEBHOOK_DELIVERIES, &config.webhook_purge_cron),
    ];
    let mut jobs = Vec::new();
    for (kind, cron) in built_in {
        jobs.push(PeriodicJob::new(kind, cron).map_err(|e| (kind, e))?);
    }
    jobs.extend(extra.iter().cloned());
    Ok(jobs)
}

/// [`ANOMALY_SCAN`]: a system-wide run without a `"workspaces"` list scans every
/// workspace of the directory; any other run is [`AnomalyScanHandler`]'s.
#[derive(Debug)]
struct ScanEveryWorkspace {
    scan: AnomalyScanHandler,
    scanner: AnomalyScanner,
    workspaces: Arc<dyn WorkspaceDirectory>,
}

#[async_trait]
impl JobHandler for ScanEveryWorkspace {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let listed = job.payload.get("workspaces").is_some_and(|v| !v.is_null());
        if job.workspace_id != SYSTEM_WORKSPACE || listed {
            return self.scan.handle(job, ctx).await;
        }
        let mut first_error = None;
        for workspace_id in self.workspaces.workspaces().await? {
            if let Err(err) = self.scanner.scan(workspace_id).await {
                tracing::warn!(%workspace_id, error = %err, "anomaly scan failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), |err| Err(err.into()))
    }
}

/// [`SCORE_DECAY`]: enqueues one [`RESCORE_ALL`] job per workspace, keyed by the run's
/// scheduled instant, so a retried fan-out enqueues each once.
#[derive(Debug)]
struct DecayEveryWorkspace {
    jobs: Arc<dyn JobStore>,
    workspaces: Arc<dyn WorkspaceDirectory>,
}

#[async_trait]
impl JobHandler for DecayEveryWorkspace {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let instant = job
            .payload
            .get("scheduled_at")
            .and_then(Value::as_str)
            .map_or_else(|| job.id.to_string(), str::to_owned);
        for workspace_id in self.workspaces.workspaces().await? {
            let rescore = decay_job(workspace_id, &instant, ctx)
                .map_err(|e| JobError::permanent(e.to_string()))?;
            self.jobs.enqueue_job(&rescore).await?;
        }
        Ok(())
    }
}

/// [`PURGE_WEBHOOK_DELIVERIES`]: deletes the delivery records older than the
/// retention, measured from the run's time.
#[derive(Debug)]
struct PurgeDeliveries {
    pipeline: InboundPipeline,
    retention: chrono::Duration,
}

#[async_trait]
impl JobHandler for PurgeDeliveries {
    async fn handle(&self, _job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let purged = self
            .pipeline
            .purge_deliveries(ctx.now - self.retention)
            .await?;
        tracing::debug!(purged, "old webhook deliveries purged");
        Ok(())
    }
}

fn decay_job(
    workspace_id: WorkspaceId,
    instant: &str,
    ctx: &JobContext,
) -> Result<Job, ValidationError> {
    let payload = json!({ "reason": "decay", "scheduled_at": instant });
    Ok(Job::new(workspace_id, RESCORE_ALL, payload, ctx.now)?
        .with_idempotency_key(format!("{RESCORE_ALL}@{instant}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_periodic_jobs_are_system_wide_and_valid() {
        let jobs = periodic_jobs(&EngineConfig::default(), &[]).unwrap();
        let kinds: Vec<_> = jobs.iter().map(PeriodicJob::kind).collect();
        assert_eq!(
            kinds,
            [
                EXPIRE_APPROVALS,
                ANOMALY_SCAN,
                SCORE_DECAY,
                PURGE_WEBHOOK_DELIVERIES
            ]
        );
        assert!(jobs.iter().all(|j| j.workspace_id() == SYSTEM_WORKSPACE));
        let bad = EngineConfig::default().with_schedules("nope", "0 * * * * *", "0 * * * * *");
        assert_eq!(periodic_jobs(&bad, &[]).unwrap_err().0, EXPIRE_APPROVALS);
    }

    #[test]
    fn decay_jobs_are_keyed_by_their_instant() {
        let ws = WorkspaceId::new();
        let ctx = JobContext::new("w", chrono::DateTime::UNIX_EPOCH, 1);
        let job = decay_job(ws, "2026-01-01T03:00:00Z", &ctx).unwrap();
        assert_eq!(job.kind, RESCORE_ALL);
        assert_eq!(job.workspace_id, ws);
        assert_eq!(
            job.idempotency_key.as_deref(),
            Some("scoring.rescore_all@2026-01-01T03:00:00Z")
        );
    }
}
