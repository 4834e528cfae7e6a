//! Consent ledger, suppression list and audit trail.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{AuditEntryId, ContactId, SuppressionId, WorkspaceId};
use crate::model::{AuditEntry, Channel, Consent, Suppression};
use crate::store::{Inserted, Page, WithStopped};

/// Consent and suppression, checked before every send.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait ComplianceStore: Send + Sync + Debug {
    /// Appends a consent ledger entry. The contact must exist in the workspace
    /// (`InvalidReference`); a reused id is `Conflict`.
    ///
    /// When, with the entry, the consent in force for (contact, channel) is withdrawn,
    /// the same atomic step cancels the contact's messages on that channel that are
    /// `Pending` or `InFlight` but not yet marked sending (each as
    /// [`finish_outbox`](crate::store::OutboxStore::finish_outbox) cancels, reason
    /// `"contact withdrew consent for <channel>"`, every quota unit they held given
    /// back), and the answer's
    /// [`stopped`](WithStopped::stopped) reports them and the messages already marked
    /// sending (see [`OutboxStore::begin_sends`](crate::store::OutboxStore::begin_sends)):
    /// no other send to the contact on the channel starts after the call returns.
    async fn record_consent(&self, consent: &Consent) -> Result<WithStopped<Consent>, StoreError>;

    /// The entry in force for each `(contact, channel)` pair: the one with the latest
    /// `recorded_at` (ties broken by the greater id), or `None` if none was recorded.
    /// One answer per pair, in order (exactly `keys.len()` answers). A backend should
    /// answer in one round trip. The single-pair form is
    /// [`ComplianceStoreExt::current_consent`](crate::store::ComplianceStoreExt::current_consent).
    async fn current_consents(
        &self,
        workspace_id: WorkspaceId,
        keys: &[(ContactId, Channel)],
    ) -> Result<Vec<Option<Consent>>, StoreError>;

    /// Adds a suppression. Idempotent on (workspace, channel, normalised address): if an
    /// equal entry exists it is returned unchanged with `created: false`. The address
    /// MUST be normalised with [`normalize_address`](crate::model::normalize_address)
    /// before storing.
    ///
    /// In the same atomic step (also when the entry existed), the workspace's messages
    /// to the address (normalised recipient; on the entry's channel, or any channel for
    /// an all-channel entry) that are `Pending` or `InFlight` but not yet marked
    /// sending are cancelled (each as
    /// [`finish_outbox`](crate::store::OutboxStore::finish_outbox) cancels, reason
    /// `"recipient is suppressed (<reason>)"`, every quota unit they held given back),
    /// and the answer's
    /// [`stopped`](WithStopped::stopped) reports them and the messages already marked
    /// sending (see [`OutboxStore::begin_sends`](crate::store::OutboxStore::begin_sends)):
    /// no other send to the address starts after the call returns.
    async fn add_suppression(
        &self,
        suppression: &Suppression,
    ) -> Result<WithStopped<Inserted<Suppression>>, StoreError>;

    /// For each `(channel, address)` pair, the suppression that blocks `address` on
    /// `channel`: an entry for that channel or for all channels (`channel: None`),
    /// matched after normalising `address`. When both exist, the all-channel entry is
    /// answered. One answer per pair, in order (exactly `targets.len()` answers). The
    /// dispatcher checks a whole batch with it; a backend should answer in one round
    /// trip. The single-pair form is
    /// [`ComplianceStoreExt::find_suppression`](crate::store::ComplianceStoreExt::find_suppression).
    async fn find_suppressions(
        &self,
        workspace_id: WorkspaceId,
        targets: &[(Channel, &str)],
    ) -> Result<Vec<Option<Suppression>>, StoreError>;

    /// Removes the entry for exactly (channel, normalised address); `true` if one existed.
    async fn remove_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
        address: &str,
    ) -> Result<bool, StoreError>;

    /// Suppressions of the workspace, ascending by id.
    async fn list_suppressions(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SuppressionId>,
    ) -> Result<Vec<Suppression>, StoreError>;
}

/// The append-only audit trail.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore); entries are never
/// changed or deleted.
#[async_trait]
pub trait AuditStore: Send + Sync + Debug {
    /// Appends an entry; a reused id is `Conflict`.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError>;

    /// Entries of the workspace, optionally only those about `subject`, ascending by id.
    async fn list_audit(
        &self,
        workspace_id: WorkspaceId,
        subject: Option<&str>,
        page: Page<AuditEntryId>,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}
