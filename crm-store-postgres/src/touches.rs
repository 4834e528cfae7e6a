//! Touch counts for the daily touch limit: one count over the partial index of
//! migration 0015.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::store::{TouchStore, validate_touch_period};

use crate::PostgresStore;
use crate::error::{backend, db};

const TOUCHES: &str = "touches";

/// Sent in `[from, to)`, or queued and due before `to`; never manual tasks.
const COUNT_TOUCHES: &str = "\
SELECT count(*) FROM outbox_messages
 WHERE workspace_id = $1 AND contact_id = $2 AND channel <> 'manual_task'
   AND ((status = 'sent' AND sent_at >= $3 AND sent_at < $4)
     OR (status IN ('pending', 'awaiting_approval', 'in_flight') AND not_before < $4))";

#[async_trait]
impl TouchStore for PostgresStore {
    async fn count_contact_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        validate_touch_period(from, to)?;
        let n = sqlx::query_scalar::<_, i64>(COUNT_TOUCHES)
            .bind(workspace_id.as_uuid())
            .bind(contact_id.as_uuid())
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await
            .map_err(db(TOUCHES))?;
        u64::try_from(n).map_err(backend)
    }
}
