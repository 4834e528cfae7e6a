//! The enrichment cache, usage log, monthly spend and spend reservations.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    CachedEnrichment, EnrichmentDataType, EnrichmentStore, EnrichmentUsage, ReserveOutcome,
    SpendReservation, SpendReservationId, SpendTotals, validate_limit, validate_month,
    validate_settlement,
};
use crm_core::{Currency, Money, StoreError, ValidationError};

use crate::{MemoryStore, Tables};

/// The enrichment tables.
#[derive(Default)]
pub(crate) struct EnrichmentTables {
    cache: HashMap<(WorkspaceId, EnrichmentDataType, String), CachedEnrichment>,
    /// Usage rows in recording order.
    usage: Vec<EnrichmentUsage>,
    /// Spend in minor units per (workspace, month, currency).
    spend: HashMap<(WorkspaceId, NaiveDate, Currency), i64>,
    /// Open (neither settled nor released) reservations, live or expired.
    reservations: HashMap<(WorkspaceId, SpendReservationId), SpendReservation>,
}

impl EnrichmentTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("enrichment_cache", self.cache.len()),
            ("enrichment_usage", self.usage.len()),
            ("enrichment_spend", self.spend.len()),
            ("enrichment_reservations", self.reservations.len()),
        ]);
    }
}

/// Appends `usage` and adds its cost to the month's spend, under the store lock.
fn record(t: &mut Tables, usage: &EnrichmentUsage) -> Result<SpendTotals, StoreError> {
    usage.validate()?;
    let e = &mut t.enrichment;
    let key = (usage.workspace_id, usage.month(), usage.cost.currency());
    let before = e.spend.get(&key).copied().unwrap_or(0);
    let after = before
        .checked_add(usage.cost.minor_units())
        .ok_or_else(|| ValidationError::new("enrichment_usage.cost", "overflows the spend"))?;
    e.spend.insert(key, after);
    e.usage.push(usage.clone());
    Ok(SpendTotals { before, after })
}

/// Checks the budget and holds the amount, under the store lock.
fn reserve(
    t: &mut Tables,
    r: &SpendReservation,
    now: DateTime<Utc>,
) -> Result<ReserveOutcome, StoreError> {
    r.validate()?;
    let e = &mut t.enrichment;
    if e.reservations.contains_key(&(r.workspace_id, r.id)) {
        return Err(StoreError::conflict(
            "enrichment_reservation",
            "the reservation id is already in use",
        ));
    }
    let currency = r.amount.currency();
    if let Some(cap) = r.cap {
        let spent = e
            .spend
            .get(&(r.workspace_id, r.month, currency))
            .copied()
            .unwrap_or(0);
        let reserved: i64 = e
            .reservations
            .values()
            .filter(|o| {
                o.workspace_id == r.workspace_id
                    && o.month == r.month
                    && o.amount.currency() == currency
                    && o.expires_at > now
            })
            .map(|o| o.amount.minor_units())
            .sum();
        let committed = spent
            .saturating_add(reserved)
            .saturating_add(r.amount.minor_units());
        if spent >= cap || committed > cap {
            return Ok(ReserveOutcome::Refused { spent, reserved });
        }
    }
    e.reservations.insert((r.workspace_id, r.id), r.clone());
    Ok(ReserveOutcome::Reserved)
}

/// Ends the reservation and records the usage, under the store lock.
fn settle(
    t: &mut Tables,
    id: SpendReservationId,
    usage: &EnrichmentUsage,
) -> Result<SpendTotals, StoreError> {
    let key = (usage.workspace_id, id);
    let Some(r) = t.enrichment.reservations.get(&key) else {
        return Err(StoreError::not_found("enrichment_reservation", id));
    };
    validate_settlement(r.month, r.amount, usage)?;
    let totals = record(t, usage)?;
    t.enrichment.reservations.remove(&key);
    Ok(totals)
}

#[async_trait]
impl EnrichmentStore for MemoryStore {
    async fn get_cached_enrichment(
        &self,
        workspace_id: WorkspaceId,
        data_type: EnrichmentDataType,
        subject: &str,
    ) -> Result<Option<CachedEnrichment>, StoreError> {
        let key = (workspace_id, data_type, subject.to_owned());
        Ok(self.with(|t| t.enrichment.cache.get(&key).cloned()))
    }

    async fn put_cached_enrichment(&self, entry: &CachedEnrichment) -> Result<(), StoreError> {
        entry.validate()?;
        let key = (entry.workspace_id, entry.data_type, entry.subject.clone());
        self.with(|t| t.enrichment.cache.insert(key, entry.clone()));
        Ok(())
    }

    async fn record_enrichment_usage(
        &self,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError> {
        self.with(|t| record(t, usage))
    }

    async fn reserve_enrichment_spend(
        &self,
        reservation: &SpendReservation,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, StoreError> {
        self.with(|t| reserve(t, reservation, now))
    }

    async fn settle_enrichment_spend(
        &self,
        id: SpendReservationId,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError> {
        self.with(|t| settle(t, id, usage))
    }

    async fn release_enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        id: SpendReservationId,
    ) -> Result<(), StoreError> {
        self.with(|t| t.enrichment.reservations.remove(&(workspace_id, id)));
        Ok(())
    }

    async fn enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        currency: Currency,
    ) -> Result<Money, StoreError> {
        validate_month(month)?;
        let spent = self.with(|t| {
            let key = (workspace_id, month, currency);
            t.enrichment.spend.get(&key).copied().unwrap_or(0)
        });
        Ok(Money::new(spent, currency)?)
    }

    async fn list_enrichment_usage(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        limit: u32,
    ) -> Result<Vec<EnrichmentUsage>, StoreError> {
        validate_month(month)?;
        validate_limit(limit)?;
        let mut rows = self.with(|t| {
            t.enrichment
                .usage
                .iter()
                .filter(|u| u.workspace_id == workspace_id && u.month() == month)
                .cloned()
                .collect::<Vec<_>>()
        });
        // Oldest first; the sort is stable, so equal times keep recording order.
        rows.sort_by_key(|u| u.at);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }
}
