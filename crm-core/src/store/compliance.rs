//! Consent ledger, suppression list and audit trail.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{AuditEntryId, ContactId, SuppressionId, WorkspaceId};
use crate::model::{AuditEntry, Channel, Consent, Suppression};
use crate::store::{Inserted, Page};

/// Consent and suppression, checked before every send.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait ComplianceStore: Send + Sync + Debug {
    /// Appends a consent ledger entry. The contact must exist in the workspace
    /// (`InvalidReference`); a reused id is `Conflict`.
    async fn record_consent(&self, consent: &Consent) -> Result<Consent, StoreError>;

    /// The entry in force for the contact and channel: the one with the latest
    /// `recorded_at` (ties broken by the greater id), or `None` if none was recorded.
    async fn current_consent(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        channel: Channel,
    ) -> Result<Option<Consent>, StoreError>;

    /// [`current_consent`](Self::current_consent) for many `(contact, channel)` pairs
    /// at once: one answer per pair, in order. A backend should answer in one round
    /// trip (the default asks one by one).
    async fn current_consents(
        &self,
        workspace_id: WorkspaceId,
        keys: &[(ContactId, Channel)],
    ) -> Result<Vec<Option<Consent>>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for &(contact_id, channel) in keys {
            found.push(
                self.current_consent(workspace_id, contact_id, channel)
                    .await?,
            );
        }
        Ok(found)
    }

    /// Adds a suppression. Idempotent on (workspace, channel, normalised address): if an
    /// equal entry exists it is returned unchanged with `created: false`. The address
    /// MUST be normalised with [`normalize_address`](crate::model::normalize_address)
    /// before storing.
    async fn add_suppression(
        &self,
        suppression: &Suppression,
    ) -> Result<Inserted<Suppression>, StoreError>;

    /// The suppression that blocks `address` on `channel`: an entry for that channel or
    /// for all channels (`channel: None`), matched after normalising `address`. When
    /// both exist, the all-channel entry is returned.
    async fn find_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError>;

    /// [`find_suppression`](Self::find_suppression) for many `(channel, address)`
    /// pairs at once: one answer per pair, in order. The dispatcher checks a whole batch
    /// with it; a backend should answer in one round trip (the default asks one by one).
    async fn find_suppressions(
        &self,
        workspace_id: WorkspaceId,
        targets: &[(Channel, &str)],
    ) -> Result<Vec<Option<Suppression>>, StoreError> {
        let mut found = Vec::with_capacity(targets.len());
        for &(channel, address) in targets {
            found.push(
                self.find_suppression(workspace_id, channel, address)
                    .await?,
            );
        }
        Ok(found)
    }

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
