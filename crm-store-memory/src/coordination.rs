//! Quotas, named leases and anomalies.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::ids::{AnomalyId, WorkspaceId};
use crm_core::model::rules::{
    require_new_version, require_positive_ttl, validate_lease_request, validate_quota_amount,
};
use crm_core::model::{Anomaly, AnomalyStatus, LeaseGrant};
use crm_core::store::takeover_cutoff;
use crm_core::store::{
    AnomalyStore, Inserted, LeaseStore, Page, QuotaDecision, QuotaKey, QuotaStore,
};
use crm_core::{StoreError, ValidationError, events};

use crate::queue::append_changes;
use crate::table::{Table, Unique, cloned, deadline};
use crate::{MemoryStore, Tables};

/// A named lease row. It outlives its holders so the token keeps growing.
struct LeaseRow {
    /// The current holder; `None` once released.
    holder: Option<String>,
    token: i64,
    expires_at: DateTime<Utc>,
}

/// The coordination tables.
#[derive(Default)]
pub(crate) struct CoordinationTables {
    pub(crate) quotas: HashMap<(WorkspaceId, QuotaKey), u32>,
    leases: HashMap<(WorkspaceId, String), LeaseRow>,
    anomalies: Table<Anomaly>,
    /// Dedup key -> the one open anomaly with it.
    open: Unique<String, AnomalyId>,
}

impl CoordinationTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("quotas", self.quotas.len()),
            ("leases", self.leases.len()),
            ("anomalies", self.anomalies.len()),
        ]);
    }

    /// Stores an anomaly, keeping the open-dedup index. Uniqueness must have been checked.
    fn put_anomaly(&mut self, row: Anomaly) -> Anomaly {
        let (ws, id) = (row.workspace_id, row.id);
        let old = self.anomalies.get(ws, id).and_then(open_key);
        self.open.replace(ws, old, open_key(&row), id);
        self.anomalies.put(row).clone()
    }
}

/// The key under which `a` blocks a duplicate, while it is open.
fn open_key(a: &Anomaly) -> Option<String> {
    a.status.is_open().then(|| a.dedup_key.clone())
}

fn consume(
    t: &mut Tables,
    ws: WorkspaceId,
    key: &QuotaKey,
    cap: u32,
    amount: u32,
) -> Result<QuotaDecision, StoreError> {
    validate_quota_amount(amount)?;
    let quotas = &mut t.coordination.quotas;
    let used = quotas.get(&(ws, key.clone())).copied().unwrap_or(0);
    match used.checked_add(amount).filter(|total| *total <= cap) {
        Some(total) => {
            quotas.insert((ws, key.clone()), total);
            Ok(QuotaDecision::Granted {
                used: total,
                remaining: cap - total,
            })
        }
        None => Ok(QuotaDecision::Exhausted { used, cap }),
    }
}

fn acquire(
    t: &mut Tables,
    ws: WorkspaceId,
    name: &str,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Option<LeaseGrant>, StoreError> {
    validate_lease_request(name, holder, ttl)?;
    let expires_at = deadline(now, ttl)?;
    let row = t
        .coordination
        .leases
        .entry((ws, name.to_owned()))
        .or_insert(LeaseRow {
            holder: None,
            token: 0,
            expires_at: now,
        });
    let same_holder = row.holder.as_deref() == Some(holder);
    // Another holder's lease is judged with the skew allowance (see `takeover_cutoff`).
    let free = row.holder.is_none() || row.expires_at <= takeover_cutoff(now);
    if !same_holder && !free {
        return Ok(None);
    }
    if !same_holder {
        // The lease changes hands (a released lease counts as held by nobody), so the
        // token grows; the same holder keeps its token even after expiry.
        row.token += 1;
        row.holder = Some(holder.to_owned());
    }
    row.expires_at = expires_at;
    Ok(Some(LeaseGrant {
        workspace_id: ws,
        name: name.to_owned(),
        holder: holder.to_owned(),
        token: row.token,
        expires_at,
    }))
}

/// The lease row `grant` still holds (same holder and token), if any.
fn held<'a>(t: &'a mut Tables, grant: &LeaseGrant) -> Option<&'a mut LeaseRow> {
    t.coordination
        .leases
        .get_mut(&(grant.workspace_id, grant.name.clone()))
        .filter(|row| {
            row.holder.as_deref() == Some(grant.holder.as_str()) && row.token == grant.token
        })
}

fn raise(t: &mut Tables, anomaly: &Anomaly) -> Result<Inserted<Anomaly>, StoreError> {
    anomaly.validate()?;
    require_new_version(anomaly.version)?;
    if anomaly.status != AnomalyStatus::Active {
        return Err(ValidationError::new("anomaly.status", "a new anomaly must be active").into());
    }
    let ws = anomaly.workspace_id;
    let c = &mut t.coordination;
    if let Some(existing) = c
        .open
        .get(ws, anomaly.dedup_key.as_str())
        .and_then(|id| c.anomalies.get(ws, id))
    {
        return Ok(Inserted {
            value: existing.clone(),
            created: false,
        });
    }
    c.anomalies.ensure_vacant(anomaly)?;
    let event = events::anomaly_changed(None, anomaly)?;
    let value = c.put_anomaly(anomaly.clone());
    append_changes(t, event.as_slice());
    Ok(Inserted {
        value,
        created: true,
    })
}

fn update_anomaly(t: &mut Tables, anomaly: &Anomaly) -> Result<Anomaly, StoreError> {
    anomaly.validate()?;
    let c = &mut t.coordination;
    let (row, old) = c.anomalies.cas(anomaly)?;
    let event = events::anomaly_changed(Some(old), &row)?;
    // Reopening or re-keying must not make a second open anomaly with one key (a
    // partial unique index in SQL).
    c.open.check(
        row.workspace_id,
        open_key(&row).as_ref(),
        row.id,
        "dedup_key",
    )?;
    let stored = c.put_anomaly(row);
    append_changes(t, event.as_slice());
    Ok(stored)
}

#[async_trait]
impl QuotaStore for MemoryStore {
    async fn try_consume_quota(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
        cap: u32,
        amount: u32,
    ) -> Result<QuotaDecision, StoreError> {
        self.with(|t| consume(t, workspace_id, key, cap, amount))
    }

    async fn quota_usage(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
    ) -> Result<u32, StoreError> {
        self.with(|t| {
            Ok(t.coordination
                .quotas
                .get(&(workspace_id, key.clone()))
                .copied()
                .unwrap_or(0))
        })
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn try_acquire_lease(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        self.with(|t| acquire(t, workspace_id, name, holder, ttl, now))
    }

    async fn renew_lease(
        &self,
        grant: &LeaseGrant,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<LeaseGrant, StoreError> {
        require_positive_ttl(ttl)?;
        self.with(|t| {
            let row = held(t, grant).ok_or_else(|| StoreError::lease_lost("lease", &grant.name))?;
            row.expires_at = deadline(now, ttl)?;
            Ok(LeaseGrant {
                expires_at: row.expires_at,
                ..grant.clone()
            })
        })
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<bool, StoreError> {
        self.with(|t| {
            let Some(row) = held(t, grant) else {
                return Ok(false);
            };
            row.holder = None;
            Ok(true)
        })
    }
}

#[async_trait]
impl AnomalyStore for MemoryStore {
    async fn raise_anomaly(&self, anomaly: &Anomaly) -> Result<Inserted<Anomaly>, StoreError> {
        self.with(|t| raise(t, anomaly))
    }

    async fn get_anomaly(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
    ) -> Result<Anomaly, StoreError> {
        self.with(|t| t.coordination.anomalies.find(workspace_id, id).cloned())
    }

    async fn update_anomaly(&self, anomaly: &Anomaly) -> Result<Anomaly, StoreError> {
        self.with(|t| update_anomaly(t, anomaly))
    }

    async fn list_anomalies(
        &self,
        workspace_id: WorkspaceId,
        open_only: bool,
        page: Page<AnomalyId>,
    ) -> Result<Vec<Anomaly>, StoreError> {
        self.with(|t| {
            cloned(
                t.coordination
                    .anomalies
                    .page(workspace_id, &page, |a| !open_only || a.status.is_open()),
            )
        })
    }
}
