//! Queued touches for the daily touch limit: one count over the partial index of
//! migration 0015.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::store::TouchStore;

use crate::PostgresStore;
use crate::error::{backend, db};

const TOUCHES: &str = "touches";

/// Queued and due before `$3`; never manual tasks.
const COUNT_QUEUED_TOUCHES: &str = "\
SELECT count(*) FROM outbox_messages
 WHERE workspace_id = $1 AND contact_id = $2 AND channel <> 'manual_task'
   AND status IN ('pending', 'awaiting_approval', 'in_flight') AND not_before < $3";

#[async_trait]
impl TouchStore for PostgresStore {
    async fn count_queued_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n = sqlx::query_scalar::<_, i64>(COUNT_QUEUED_TOUCHES)
            .bind(workspace_id.as_uuid())
            .bind(contact_id.as_uuid())
            .bind(before)
            .fetch_one(&self.pool)
            .await
            .map_err(db(TOUCHES))?;
        u64::try_from(n).map_err(backend)
    }
}
