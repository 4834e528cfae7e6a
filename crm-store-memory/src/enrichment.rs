//! The enrichment cache, usage log and monthly spend.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    CachedEnrichment, EnrichmentDataType, EnrichmentStore, EnrichmentUsage, SpendTotals,
    validate_limit, validate_month,
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
}

impl EnrichmentTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("enrichment_cache", self.cache.len()),
            ("enrichment_usage", self.usage.len()),
            ("enrichment_spend", self.spend.len()),
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
