//! Queued touches for the daily touch limit: one count over the partial index of
//! migration 0015.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::store::{ContactDay, TouchStore, validate_day_count};

use crate::PostgresStore;
use crate::error::{backend, db};

const TOUCHES: &str = "touches";

/// Queued and due before `$3`; never manual tasks.
const COUNT_QUEUED_TOUCHES: &str = "\
SELECT count(*) FROM outbox_messages
 WHERE workspace_id = $1 AND contact_id = $2 AND channel <> 'manual_task'
   AND status IN ('pending', 'awaiting_approval', 'in_flight') AND not_before < $3";

/// Each day's sent messages (`activities_contact_idx`) plus its queued touches (the
/// partial index of 0015), in the days' order.
const COUNT_DAY_TOUCHES: &str = "\
SELECT (SELECT count(*) FROM activities a
         WHERE a.workspace_id = $1 AND a.contact_id = d.contact_id
           AND a.kind = 'message_sent' AND a.occurred_at >= d.since)
     + (SELECT count(*) FROM outbox_messages m
         WHERE m.workspace_id = $1 AND m.contact_id = d.contact_id
           AND m.channel <> 'manual_task'
           AND m.status IN ('pending', 'awaiting_approval', 'in_flight')
           AND m.not_before < d.before)
FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[])
     WITH ORDINALITY AS d(contact_id, since, before, ord)
ORDER BY d.ord";

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

    async fn count_day_touches(
        &self,
        workspace_id: WorkspaceId,
        days: &[ContactDay],
    ) -> Result<Vec<u64>, StoreError> {
        validate_day_count(days)?;
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let contacts: Vec<_> = days.iter().map(|d| d.contact_id.as_uuid()).collect();
        let since: Vec<_> = days.iter().map(|d| d.since).collect();
        let before: Vec<_> = days.iter().map(|d| d.before).collect();
        let counts = sqlx::query_scalar::<_, i64>(COUNT_DAY_TOUCHES)
            .bind(workspace_id.as_uuid())
            .bind(contacts)
            .bind(since)
            .bind(before)
            .fetch_all(&self.pool)
            .await
            .map_err(db(TOUCHES))?;
        counts
            .into_iter()
            .map(|n| u64::try_from(n).map_err(backend))
            .collect()
    }
}
