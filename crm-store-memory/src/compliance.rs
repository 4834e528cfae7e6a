//! Consent ledger, suppression list and audit trail.

use std::collections::HashMap;

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::ids::{AuditEntryId, ContactId, SuppressionId, WorkspaceId};
use crm_core::model::{AuditEntry, Channel, Consent, Suppression, normalize_address};
use crm_core::store::{AuditStore, ComplianceStore, Inserted, Page, WithStopped};

use crate::send_gate::{stop_suppressed, stop_withdrawn};

use crate::table::{Table, Unique, cloned};
use crate::{MemoryStore, Tables};

/// (channel or all channels, normalised address).
type SuppressionKey = (Option<Channel>, String);

/// The compliance tables.
#[derive(Default)]
pub(crate) struct ComplianceTables {
    consents: Table<Consent>,
    suppressions: Table<Suppression>,
    suppression_keys: Unique<SuppressionKey, SuppressionId>,
    audit: Table<AuditEntry>,
}

impl ComplianceTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("consents", self.consents.len()),
            ("suppressions", self.suppressions.len()),
            ("audit", self.audit.len()),
        ]);
    }

    fn suppression(&self, ws: WorkspaceId, key: &SuppressionKey) -> Option<&Suppression> {
        self.suppression_keys
            .get(ws, key)
            .and_then(|id| self.suppressions.get(ws, id))
    }
}

fn record_consent(t: &mut Tables, consent: &Consent) -> Result<WithStopped<Consent>, StoreError> {
    consent.validate()?;
    t.compliance.consents.ensure_vacant(consent)?;
    t.crm
        .contacts
        .ensure_ref(consent.workspace_id, Some(consent.contact_id))?;
    let result = t.compliance.consents.put(consent.clone()).clone();
    let stopped = stop_withdrawn(
        t,
        result.workspace_id,
        result.contact_id,
        result.channel,
        result.recorded_at,
    );
    Ok(WithStopped { result, stopped })
}

/// The consent in force for (contact, channel): the latest `recorded_at`, ties by id.
pub(crate) fn current_consent(
    c: &ComplianceTables,
    ws: WorkspaceId,
    contact: ContactId,
    channel: Channel,
) -> Option<&Consent> {
    c.consents
        .rows(ws)
        .filter(|x| x.contact_id == contact && x.channel == channel)
        .max_by_key(|x| (x.recorded_at, x.id))
}

fn add_suppression(
    t: &mut Tables,
    suppression: &Suppression,
) -> Result<WithStopped<Inserted<Suppression>>, StoreError> {
    let result = insert_suppression(t, suppression)?;
    let stopped = stop_suppressed(t, &result.value);
    Ok(WithStopped { result, stopped })
}

fn insert_suppression(
    t: &mut Tables,
    suppression: &Suppression,
) -> Result<Inserted<Suppression>, StoreError> {
    let mut row = suppression.clone();
    row.address = normalize_address(&row.address);
    row.validate()?;
    let ws = row.workspace_id;
    let key = (row.channel, row.address.clone());
    let c = &mut t.compliance;
    // Like `INSERT ... ON CONFLICT (workspace, channel, address) DO NOTHING`: an equal
    // entry wins over an id clash.
    if let Some(existing) = c.suppression(ws, &key) {
        return Ok(Inserted {
            value: existing.clone(),
            created: false,
        });
    }
    c.suppressions.ensure_vacant(&row)?;
    c.suppression_keys.replace(ws, None, Some(key), row.id);
    Ok(Inserted {
        value: c.suppressions.put(row).clone(),
        created: true,
    })
}

fn remove_suppression(
    t: &mut Tables,
    ws: WorkspaceId,
    channel: Option<Channel>,
    address: &str,
) -> bool {
    let key = (channel, normalize_address(address));
    let c = &mut t.compliance;
    let Some(id) = c.suppression_keys.get(ws, &key) else {
        return false;
    };
    c.suppression_keys.replace(ws, Some(key), None, id);
    c.suppressions.remove(ws, id).is_some()
}

#[async_trait]
impl ComplianceStore for MemoryStore {
    async fn record_consent(&self, consent: &Consent) -> Result<WithStopped<Consent>, StoreError> {
        self.with(|t| record_consent(t, consent))
    }

    async fn current_consents(
        &self,
        workspace_id: WorkspaceId,
        keys: &[(ContactId, Channel)],
    ) -> Result<Vec<Option<Consent>>, StoreError> {
        self.with(|t| {
            // One pass over the workspace's ledger for the whole batch.
            let mut latest: HashMap<(ContactId, Channel), Option<&Consent>> =
                keys.iter().map(|&key| (key, None)).collect();
            for c in t.compliance.consents.rows(workspace_id) {
                if let Some(slot) = latest.get_mut(&(c.contact_id, c.channel))
                    && slot.is_none_or(|best| (c.recorded_at, c.id) > (best.recorded_at, best.id))
                {
                    *slot = Some(c);
                }
            }
            Ok(keys
                .iter()
                .map(|key| latest.get(key).copied().flatten().cloned())
                .collect())
        })
    }

    async fn add_suppression(
        &self,
        suppression: &Suppression,
    ) -> Result<WithStopped<Inserted<Suppression>>, StoreError> {
        self.with(|t| add_suppression(t, suppression))
    }

    async fn find_suppressions(
        &self,
        workspace_id: WorkspaceId,
        targets: &[(Channel, &str)],
    ) -> Result<Vec<Option<Suppression>>, StoreError> {
        let normalized: Vec<_> = targets
            .iter()
            .map(|&(channel, address)| (channel, normalize_address(address)))
            .collect();
        self.with(|t| {
            Ok(normalized
                .into_iter()
                .map(|(channel, address)| {
                    blocking_suppression(&t.compliance, workspace_id, channel, address)
                })
                .collect())
        })
    }

    async fn remove_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
        address: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|t| remove_suppression(t, workspace_id, channel, address)))
    }

    async fn list_suppressions(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SuppressionId>,
    ) -> Result<Vec<Suppression>, StoreError> {
        self.with(|t| {
            cloned(
                t.compliance
                    .suppressions
                    .page(workspace_id, &page, |_| true),
            )
        })
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        entry.validate()?;
        self.with(|t| {
            t.compliance.audit.ensure_vacant(entry)?;
            Ok(t.compliance.audit.put(entry.clone()).clone())
        })
    }

    async fn list_audit(
        &self,
        workspace_id: WorkspaceId,
        subject: Option<&str>,
        page: Page<AuditEntryId>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|t| {
            cloned(t.compliance.audit.page(workspace_id, &page, |e| {
                subject.is_none_or(|s| e.subject == s)
            }))
        })
    }
}

/// The suppression blocking the normalised `address` on `channel`; the all-channel
/// entry wins.
pub(crate) fn blocking_suppression(
    c: &ComplianceTables,
    workspace_id: WorkspaceId,
    channel: Channel,
    address: String,
) -> Option<Suppression> {
    let all = (None, address);
    match c.suppression(workspace_id, &all) {
        Some(row) => Some(row.clone()),
        None => c
            .suppression(workspace_id, &(Some(channel), all.1))
            .cloned(),
    }
}
