//! Inbound webhook deliveries already seen.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::store::{WebhookStore, validate_webhook_delivery};

use crate::PostgresStore;
use crate::error::db;

const DELIVERY: &str = "webhook_delivery";

/// Insert-if-absent in one statement: the primary key decides between racing
/// processes, and the loser's `DO NOTHING` returns no row.
const RECORD: &str = "
    INSERT INTO webhook_deliveries (workspace_id, provider, delivery_id, received_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (workspace_id, provider, delivery_id) DO NOTHING
    RETURNING 1";

const FORGET: &str = "DELETE FROM webhook_deliveries
    WHERE workspace_id = $1 AND provider = $2 AND delivery_id = $3";

const PURGE: &str = "DELETE FROM webhook_deliveries WHERE received_at < $1";

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn record_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let inserted = sqlx::query_scalar::<_, i32>(RECORD)
            .bind(workspace_id.as_uuid())
            .bind(provider)
            .bind(delivery_id)
            .bind(received_at)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        Ok(inserted.is_some())
    }

    async fn forget_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let done = sqlx::query(FORGET)
            .bind(workspace_id.as_uuid())
            .bind(provider)
            .bind(delivery_id)
            .execute(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE)
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        Ok(done.rows_affected())
    }
}
