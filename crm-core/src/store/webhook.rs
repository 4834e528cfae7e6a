//! Inbound webhook deliveries already seen: durable deduplication shared by every
//! process that serves a provider's webhooks.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, ValidationError};
use crate::ids::WorkspaceId;
use crate::inbound::MAX_DELIVERY_ID_BYTES;
use crate::store::{BackendName, InboundHandlerStore};

/// The longest provider name a delivery is recorded under, in bytes.
pub const MAX_PROVIDER_NAME_BYTES: usize = 64;

/// Inbound webhook deliveries, keyed by `(workspace, provider, delivery id)`.
///
/// Providers retry a delivery (with the same delivery id: Svix `svix-id`, Standard
/// Webhooks `webhook-id`, ...) until they hear a 2xx, and several host processes may
/// receive the retries. Recording the delivery here, in the store every process shares,
/// lets exactly one of them handle it.
///
/// The workspace is the one the receiving endpoint belongs to (each workspace has its
/// own provider account, signing secret and webhook URL), so keys start with the
/// workspace like every other unique key of the store.
///
/// # Contract
/// - `record_webhook_delivery` MUST be atomic: of any number of concurrent calls with
///   the same key, from any number of processes, exactly one answers `true`.
/// - A recorded key answers `false` until it is forgotten or purged.
/// - Tenant scoping: the same provider and delivery id in two workspaces are two keys.
/// - Inputs are checked with [`validate_webhook_delivery`]: an empty or over-long
///   provider or delivery id, or one holding U+0000, is `Invalid`.
#[async_trait]
pub trait WebhookStore: Send + Sync + Debug {
    /// Records the delivery `(workspace_id, provider, delivery_id)` received at
    /// `received_at` if it is not recorded yet. `true` when this call recorded it (the
    /// caller handles the delivery), `false` when it was recorded before (a duplicate).
    async fn record_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets a recorded delivery, so the provider's next retry of it is handled again
    /// (the pipeline calls this when handling a recorded delivery failed). `true` when
    /// a record was removed; forgetting an unknown key is not an error.
    async fn forget_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes every delivery, of every workspace, received strictly before `before`;
    /// returns how many were deleted. Run it periodically with a cutoff older than the
    /// providers' retry horizon (Svix retries for about a day and a half), so a purged
    /// key is never retried again.
    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// What the inbound pipeline (`InboundPipeline`, in `outreach::inbound`) uses: the
/// [`WebhookStore`] to deduplicate deliveries, and everything the inbound handler uses
/// ([`InboundHandlerStore`]) to apply their events.
pub trait InboundPipelineStore: BackendName + InboundHandlerStore + WebhookStore {}

impl<T> InboundPipelineStore for T where T: BackendName + InboundHandlerStore + WebhookStore + ?Sized
{}

// Compile-time guard: the port stays dyn-compatible.
const _: Option<&dyn InboundPipelineStore> = None;

/// Checks a delivery key as every [`WebhookStore`] does: the provider name is 1 to
/// [`MAX_PROVIDER_NAME_BYTES`] bytes, the delivery id 1 to
/// [`MAX_DELIVERY_ID_BYTES`] bytes, neither holds U+0000.
///
/// # Errors
/// `Invalid`, naming the field.
pub fn validate_webhook_delivery(provider: &str, delivery_id: &str) -> Result<(), StoreError> {
    check_key_part(
        "webhook_delivery.provider",
        provider,
        MAX_PROVIDER_NAME_BYTES,
    )?;
    check_key_part(
        "webhook_delivery.delivery_id",
        delivery_id,
        MAX_DELIVERY_ID_BYTES,
    )
}

fn check_key_part(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.len() > max {
        format!("must be at most {max} bytes")
    } else if value.contains('\0') {
        "must not contain U+0000".to_owned()
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(ValidationError::new(field, reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(validate_webhook_delivery("resend", "msg_1").is_ok());
        assert!(validate_webhook_delivery("", "msg_1").is_err());
        assert!(validate_webhook_delivery("resend", "").is_err());
        assert!(validate_webhook_delivery("resend", "a\0b").is_err());
        let long = "x".repeat(MAX_DELIVERY_ID_BYTES + 1);
        assert!(validate_webhook_delivery("resend", &long).is_err());
        let long = "x".repeat(MAX_PROVIDER_NAME_BYTES + 1);
        assert!(validate_webhook_delivery(&long, "msg_1").is_err());
    }
}
