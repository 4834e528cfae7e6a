//! Queued touches for the daily touch limit: a scan of the workspace's outbox rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{Channel, OutboxStatus};
use crm_core::store::TouchStore;

use crate::MemoryStore;

#[async_trait]
impl TouchStore for MemoryStore {
    async fn count_queued_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.with(|t| {
            let n = t
                .outbox
                .messages
                .rows(workspace_id)
                .map(|fenced| &fenced.row)
                .filter(|m| {
                    m.contact_id == Some(contact_id)
                        && m.channel != Channel::ManualTask
                        && matches!(
                            m.status,
                            OutboxStatus::Pending
                                | OutboxStatus::AwaitingApproval
                                | OutboxStatus::InFlight
                        )
                        && m.not_before < before
                })
                .count();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }
}
