//! The periodic job that expires approval items past their `expires_at`.

use async_trait::async_trait;

use super::ApprovalInbox;
use crate::jobs::{JobContext, JobError, JobHandler};
use crate::model::Job;

/// Handles [`EXPIRE_APPROVALS`](crate::jobs::EXPIRE_APPROVALS): expires due approval
/// items of every workspace and cancels their messages through
/// [`ApprovalInbox::expire_due`] at the inbox's clock's now. Items whose message could
/// not be cancelled are logged by the inbox and stay unsendable; the job still
/// succeeds, since the items are expired.
#[derive(Debug, Clone)]
pub struct ExpireApprovalsHandler {
    inbox: ApprovalInbox,
}

impl ExpireApprovalsHandler {
    /// A handler expiring through `inbox`.
    #[must_use]
    pub fn new(inbox: ApprovalInbox) -> Self {
        Self { inbox }
    }
}

#[async_trait]
impl JobHandler for ExpireApprovalsHandler {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        match self.inbox.expire_due().await {
            Ok(report) => {
                if !report.expired.is_empty() {
                    tracing::info!(
                        expired = report.expired.len(),
                        cancelled = report.cancelled.len(),
                        failed = report.failed.len(),
                        "expired approval items"
                    );
                }
                Ok(())
            }
            Err(err) if err.is_retryable() => Err(JobError::retryable(err.to_string())),
            Err(err) => Err(JobError::permanent(err.to_string())),
        }
    }
}
