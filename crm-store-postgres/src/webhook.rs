//! Inbound webhook deliveries: claimed under a lease, then done.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    DeliveryClaim, WebhookStore, takeover_cutoff, validate_webhook_delivery, webhook_lease_expiry,
};

use crate::PostgresStore;
use crate::error::db;

const DELIVERY: &str = "webhook_delivery";

/// Claim-if-new-or-expired in one statement: the primary key decides between racing
/// processes, and `ON CONFLICT DO UPDATE ... WHERE` re-checks the row it locked, so of
/// several callers taking over one expired claim only the first sees it expired. A row
/// comes back only to the caller that claimed.
const CLAIM: &str = "
    INSERT INTO webhook_deliveries
        (workspace_id, provider, delivery_id, received_at, lease_expires_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (workspace_id, provider, delivery_id) DO UPDATE
        SET received_at = EXCLUDED.received_at,
            lease_expires_at = EXCLUDED.lease_expires_at
        WHERE webhook_deliveries.lease_expires_at <= $6
    RETURNING 1";

/// What a caller that did not claim found.
const STATE: &str = "SELECT lease_expires_at FROM webhook_deliveries
    WHERE workspace_id = $1 AND provider = $2 AND delivery_id = $3";

/// Done whatever the record held; a key no longer recorded is recorded done.
const COMPLETE: &str = "
    INSERT INTO webhook_deliveries
        (workspace_id, provider, delivery_id, received_at, lease_expires_at)
    VALUES ($1, $2, $3, $4, NULL)
    ON CONFLICT (workspace_id, provider, delivery_id) DO UPDATE
        SET lease_expires_at = NULL
        WHERE webhook_deliveries.lease_expires_at IS NOT NULL
    RETURNING 1";

/// Only a claim is released: a done delivery stays done.
const FORGET: &str = "DELETE FROM webhook_deliveries
    WHERE workspace_id = $1 AND provider = $2 AND delivery_id = $3
      AND lease_expires_at IS NOT NULL";

const PURGE: &str = "DELETE FROM webhook_deliveries WHERE received_at < $1";

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn record_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        received_at: DateTime<Utc>,
        lease: Duration,
    ) -> Result<DeliveryClaim, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let expires_at = webhook_lease_expiry(received_at, lease)?;
        let claimed = sqlx::query_scalar::<_, i32>(CLAIM)
            .bind(workspace_id.as_uuid())
            .bind(provider)
            .bind(delivery_id)
            .bind(received_at)
            .bind(expires_at)
            .bind(takeover_cutoff(received_at))
            .fetch_optional(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        if claimed.is_some() {
            return Ok(DeliveryClaim::Claimed);
        }
        let state = sqlx::query_scalar::<_, Option<DateTime<Utc>>>(STATE)
            .bind(workspace_id.as_uuid())
            .bind(provider)
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        Ok(match state {
            Some(None) => DeliveryClaim::Done,
            Some(Some(lease_expires_at)) => DeliveryClaim::InProgress { lease_expires_at },
            // Released or purged between the two statements: another caller is (or
            // just was) on it; the provider's retry finds out.
            None => DeliveryClaim::InProgress {
                lease_expires_at: received_at,
            },
        })
    }

    async fn complete_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        completed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let changed = sqlx::query_scalar::<_, i32>(COMPLETE)
            .bind(workspace_id.as_uuid())
            .bind(provider)
            .bind(delivery_id)
            .bind(completed_at)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(DELIVERY))?;
        Ok(changed.is_some())
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
