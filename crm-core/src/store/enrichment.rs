//! Enrichment state: the lookup cache, usage records and the monthly spend counter.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::money::{Currency, Money};

pub use crate::model::enrichment::{
    CachedEnrichment, EnrichmentDataType, EnrichmentUsage, SpendTotals, month_of, validate_month,
};

/// The enrichment cache, usage log and monthly spend.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). The cache never
/// judges freshness: it returns what it holds, and the engine applies the TTL.
#[async_trait]
pub trait EnrichmentStore: Send + Sync + Debug {
    /// The cached entry for (workspace, `data_type`, `subject`), fresh or not; `None`
    /// if there is none.
    async fn get_cached_enrichment(
        &self,
        workspace_id: WorkspaceId,
        data_type: EnrichmentDataType,
        subject: &str,
    ) -> Result<Option<CachedEnrichment>, StoreError>;

    /// Stores `entry`, replacing any entry with the same key (last write wins).
    /// `Invalid` for a blank subject or provider.
    async fn put_cached_enrichment(&self, entry: &CachedEnrichment) -> Result<(), StoreError>;

    /// Appends `usage` and adds its cost to the workspace's spend for its month
    /// ([`EnrichmentUsage::month`]) in its currency, in one atomic step, and returns the
    /// totals just before and after. MUST be atomic: under any number of racing
    /// callers, each sees a distinct `before`, the `after`s are the running sums, and
    /// no cost is counted twice or lost. `Invalid` for a blank provider.
    async fn record_enrichment_usage(
        &self,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError>;

    /// The workspace's spend in `currency` for `month` (a first day of month, else
    /// `Invalid`); zero if nothing was recorded.
    async fn enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        currency: Currency,
    ) -> Result<Money, StoreError>;

    /// The usage records of `month` (a first day of month, else `Invalid`), oldest
    /// first (in recording order for equal times), at most `limit` (1 to 1000).
    async fn list_enrichment_usage(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        limit: u32,
    ) -> Result<Vec<EnrichmentUsage>, StoreError>;
}
