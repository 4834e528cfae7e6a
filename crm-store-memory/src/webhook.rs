//! Inbound webhook deliveries already seen.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::store::{WebhookStore, validate_webhook_delivery};

use crate::{MemoryStore, Tables};

/// `(workspace, provider, delivery id)`.
type DeliveryKey = (WorkspaceId, String, String);

/// The webhook tables.
#[derive(Default)]
pub(crate) struct WebhookTables {
    /// Delivery key -> when it was received.
    deliveries: HashMap<DeliveryKey, DateTime<Utc>>,
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
    ) -> Result<bool, StoreError> {
        validate_webhook_delivery(provider, delivery_id)?;
        let key = key(workspace_id, provider, delivery_id);
        // Check and insert under the one lock: atomic against every other caller.
        self.with(|t: &mut Tables| {
            let table = &mut t.webhook.deliveries;
            if table.contains_key(&key) {
                return Ok(false);
            }
            table.insert(key, received_at);
            Ok(true)
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
        self.with(|t| Ok(t.webhook.deliveries.remove(&key).is_some()))
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with(|t| {
            let table = &mut t.webhook.deliveries;
            let len = table.len();
            table.retain(|_, received_at| *received_at >= before);
            Ok(u64::try_from(len - table.len()).unwrap_or(u64::MAX))
        })
    }
}
