//! Touch counts for the daily touch limit: a scan of the workspace's outbox rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{Channel, OutboxStatus};
use crm_core::store::{TouchStore, validate_touch_period};

use crate::MemoryStore;

#[async_trait]
impl TouchStore for MemoryStore {
    async fn count_contact_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        validate_touch_period(from, to)?;
        self.with(|t| {
            let n = t
                .outbox
                .messages
                .rows(workspace_id)
                .map(|fenced| &fenced.row)
                .filter(|m| m.contact_id == Some(contact_id) && m.channel != Channel::ManualTask)
                .filter(|m| match m.status {
                    OutboxStatus::Sent => m.sent_at.is_some_and(|at| from <= at && at < to),
                    OutboxStatus::Pending
                    | OutboxStatus::AwaitingApproval
                    | OutboxStatus::InFlight => m.not_before < to,
                    OutboxStatus::Failed | OutboxStatus::DeadLettered | OutboxStatus::Cancelled => {
                        false
                    }
                })
                .count();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }
}
