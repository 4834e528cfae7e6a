//! Inbound webhook deliveries already seen: durable deduplication shared by every
//! process that serves a provider's webhooks.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::error::{StoreError, ValidationError};
use crate::ids::WorkspaceId;
use crate::inbound::MAX_DELIVERY_ID_BYTES;
use crate::store::{BackendName, InboundHandlerStore};

/// The longest provider name a delivery is recorded under, in bytes.
pub const MAX_PROVIDER_NAME_BYTES: usize = 64;

/// What [`WebhookStore::record_webhook_delivery`] found for a delivery key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryClaim {
    /// This call claimed the delivery (it was new, or its earlier claim's lease had
    /// expired): the caller handles it, then calls
    /// [`WebhookStore::complete_webhook_delivery`].
    Claimed,
    /// Another caller claimed it and its lease has not expired (for this caller, see
    /// [`takeover_cutoff`](crate::store::takeover_cutoff)): it may still be handling the delivery, or may yet fail.
    /// Ask the provider to retry later.
    InProgress {
        /// When the other caller's lease expires, by its clock. It can be taken over
        /// once a caller's clock has passed this plus
        /// [`MAX_CLOCK_SKEW`](crate::store::MAX_CLOCK_SKEW).
        lease_expires_at: DateTime<Utc>,
    },
    /// The delivery was handled to the end: a duplicate.
    Done,
}

/// Inbound webhook deliveries, keyed by `(workspace, provider, delivery id)`.
///
/// Providers retry a delivery (with the same delivery id: Svix `svix-id`, Standard
/// Webhooks `webhook-id`, ...) until they hear a 2xx, and several host processes may
/// receive the retries. Claiming the delivery here, in the store every process shares,
/// lets exactly one of them handle it at a time, and marking it done afterwards lets
/// every later retry be answered as a duplicate.
///
/// A delivery is first *in progress* under a lease, and only *done* once its handler
/// completed it: a handler that crashed (or failed without releasing its claim) loses
/// nothing, because the provider's retry after the lease takes the delivery over.
///
/// The workspace is the one the receiving endpoint belongs to (each workspace has its
/// own provider account, signing secret and webhook URL), so keys start with the
/// workspace like every other unique key of the store.
///
/// # Contract
/// - `record_webhook_delivery` MUST be atomic: of any number of concurrent calls with
///   the same key, from any number of processes, at most one answers
///   [`DeliveryClaim::Claimed`] (exactly one when the key is new).
/// - An in-progress claim whose `lease_expires_at` is at or before
///   [`takeover_cutoff`](crate::store::takeover_cutoff)`(received_at)` of a new call is taken over by it (the rule
///   every lease of the store follows, see [`crate::store::MAX_CLOCK_SKEW`]); a later
///   one answers `InProgress`. A completed key answers `Done` until it is purged.
/// - Tenant scoping: the same provider and delivery id in two workspaces are two keys.
/// - Inputs are checked with [`validate_webhook_delivery`]: an empty or over-long
///   provider or delivery id, or one holding U+0000, is `Invalid`; so is a lease that
///   is not positive or runs past the last representable instant.
#[async_trait]
pub trait WebhookStore: Send + Sync + Debug {
    /// Claims the delivery `(workspace_id, provider, delivery_id)` received at
    /// `received_at` for `lease`: records it in progress until `received_at + lease`
    /// when it is new, or takes over an earlier claim whose lease expired. See
    /// [`DeliveryClaim`] for the answers.
    async fn record_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        received_at: DateTime<Utc>,
        lease: Duration,
    ) -> Result<DeliveryClaim, StoreError>;

    /// Marks a claimed delivery done, so every later arrival of it answers
    /// [`DeliveryClaim::Done`]. Idempotent; `true` when this call changed the record
    /// (an in-progress claim, or a key no longer recorded, which is recorded done at
    /// `completed_at`: the delivery was handled either way).
    async fn complete_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        completed_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Releases an in-progress claim, so the provider's next retry is handled at once
    /// rather than after the lease (the pipeline calls this when handling failed).
    /// `true` when a claim was removed; a completed delivery stays done, and forgetting
    /// an unknown key is not an error.
    async fn forget_webhook_delivery(
        &self,
        workspace_id: WorkspaceId,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes every delivery, of every workspace, done or in progress, last received
    /// strictly before `before`; returns how many were deleted. Run it periodically
    /// with a cutoff older than the providers' retry horizon (Svix retries for about a
    /// day and a half), so a purged key is never retried again.
    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// When a lease of `lease` taken at `received_at` expires: `received_at + lease`.
///
/// # Errors
/// `Invalid` when `lease` is not positive or the sum is not representable.
pub fn webhook_lease_expiry(
    received_at: DateTime<Utc>,
    lease: Duration,
) -> Result<DateTime<Utc>, StoreError> {
    if lease <= Duration::zero() {
        return Err(StoreError::Invalid(ValidationError::new(
            "webhook_delivery.lease",
            "must be positive",
        )));
    }
    received_at.checked_add_signed(lease).ok_or_else(|| {
        StoreError::Invalid(ValidationError::new(
            "webhook_delivery.lease",
            "runs past the last representable instant",
        ))
    })
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

    #[test]
    fn leases_are_checked() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(
            webhook_lease_expiry(at, Duration::seconds(60)).ok(),
            Some(at + Duration::seconds(60))
        );
        assert!(webhook_lease_expiry(at, Duration::zero()).is_err());
        assert!(webhook_lease_expiry(at, Duration::seconds(-1)).is_err());
        assert!(webhook_lease_expiry(DateTime::<Utc>::MAX_UTC, Duration::seconds(1)).is_err());
    }
}
