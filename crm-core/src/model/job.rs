//! Durable background jobs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{JobId, WorkspaceId};
use crate::model::Lease;
use crate::model::rules::{no_nul_json, no_nul_opt, require_text, stored_time};
use crate::text_enum::text_enum;

text_enum! {
    /// Where a job is in its life.
    pub enum JobStatus {
        /// Waiting for `run_at`, then claimable.
        Queued = "queued",
        /// Claimed by a worker under a lease.
        Running = "running",
        /// Finished.
        Succeeded = "succeeded",
        /// Gave up: attempts exhausted or a permanent failure; `last_error` says why.
        Dead = "dead",
    }
}

/// A unit of background work, run at least once by a handler registered for `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Handler name, e.g. `"intake.normalize"`.
    pub kind: String,
    /// Handler input.
    pub payload: serde_json::Value,
    /// Optional key; enqueueing the same key twice in a workspace yields the first job.
    pub idempotency_key: Option<String>,
    /// Current status.
    pub status: JobStatus,
    /// Claims so far (a claim counts as an attempt).
    pub attempts: i32,
    /// Claims allowed before the job goes dead.
    pub max_attempts: i32,
    /// Earliest time the job may be claimed.
    pub run_at: DateTime<Utc>,
    /// The current lease while running.
    pub lease: Option<Lease>,
    /// The last failure, or the dead-letter reason.
    pub last_error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// Default number of attempts before dead-lettering.
    pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

    /// A queued job due now.
    pub fn new(
        workspace_id: WorkspaceId,
        kind: impl Into<String>,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let job = Self {
            id: JobId::new(),
            workspace_id,
            kind: kind.into(),
            payload,
            idempotency_key: None,
            status: JobStatus::Queued,
            attempts: 0,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            run_at: now,
            lease: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        job.validate()?;
        Ok(job)
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Delays the first run.
    #[must_use]
    pub fn with_run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = stored_time(run_at);
        self
    }

    /// Sets the attempt limit.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Rules for a job being enqueued.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("job.kind", &self.kind)?;
        if let Some(key) = &self.idempotency_key {
            require_text("job.idempotency_key", key)?;
        }
        no_nul_json("job.payload", &self.payload)?;
        no_nul_opt("job.last_error", self.last_error.as_deref())?;
        if self.max_attempts < 1 {
            return Err(ValidationError::new(
                "job.max_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
