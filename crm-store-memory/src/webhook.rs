//! Inbound webhook deliveries: claimed under a lease, then done.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    DeliveryClaim, WebhookStore, takeover_cutoff, validate_webhook_delivery, webhook_lease_expiry,
};

use crate::{MemoryStore, Tables};

/// `(workspace, provider, delivery id)`.
type DeliveryKey = (WorkspaceId, String, String);

/// One delivery's record.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// When it was last claimed (or completed without a claim): the purge's clock.
    received_at: DateTime<Utc>,
    /// `None` once done; else when the claim's lease expires.
    lease_expires_at: Option<DateTime<Utc>>,
}

/// The webhook tables.
#[derive(Default)]
pub(crate) struct WebhookTables {
    deliveries: HashMap<DeliveryKey, Delivery>,
}

impl WebhookTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.push(("webhook_deliveries", self.deliveries.len()));
    }
}

fn key(workspace_id: WorkspaceId, provider: &str, delivery_id: &str) -> DeliveryKey {
    (workspace_id, provider.to_owned(), delivery_id.to_owned())
}

#[async_trait]
impl WebhookStore for MemoryStore {
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
        let key = key(workspace_id, provider, delivery_id);
        let claim = Delivery {
            received_at,
            lease_expires_at: Some(expires_at),
        };
        // Check and claim under the one lock: atomic against every other caller.
        self.with(|t: &mut Tables| {
            let table = &mut t.webhook.deliveries;
            match table.get(&key).map(|d| d.lease_expires_at) {
                None => {}
                Some(None) => return Ok(DeliveryClaim::Done),
                Some(Some(held)) if held > takeover_cutoff(received_at) => {
                    return Ok(DeliveryClaim::InProgress {
                        lease_expires_at: held,
                    });
                }
                // Expired for this caller too: the earlier handler is presumed dead.
                Some(Some(_)) => {}
            }
            table.insert(key, claim);
            Ok(DeliveryClaim::Claimed)
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
        let key = key(workspace_id, provider, delivery_id);
        self.with(|t| {
            let table = &mut t.webhook.deliveries;
            match table.get_mut(&key) {
                Some(d) if d.lease_expires_at.is_none() => Ok(false),
                Some(d) => {
                    d.lease_expires_at = None;
                    Ok(true)
                }
                None => {
                    table.insert(
                        key,
                        Delivery {
                            received_at: completed_at,
                            lease_expires_at: None,
                        },
                    );
                    Ok(true)
                }
            }
        })
    }

    async fn forget_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let key = key(workspace_id, provider, delivery_id);
        self.with(|t| {
            let table = &mut t.webhook.deliveries;
            // A done delivery stays done: only a claim is released.
            if table
                .get(&key)
                .is_some_and(|d| d.lease_expires_at.is_some())
            {
                table.remove(&key);
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with(|t| {
            let table = &mut t.webhook.deliveries;
            let len = table.len();
            table.retain(|_, d| d.received_at >= before);
            Ok(u64::try_from(len - table.len()).unwrap_or(u64::MAX))
        })
    }
}
