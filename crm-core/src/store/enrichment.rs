//! Enrichment state: the lookup cache, usage records and the monthly spend counter.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::enrichment::LookupKind;
use crate::error::{StoreError, ValidationError};
use crate::ids::WorkspaceId;
use crate::model::rules::{no_nul_json, require_text};
use crate::money::{Currency, Money};
use crate::text_enum::text_enum;

text_enum! {
    /// A kind of enrichment data; each has its own cache freshness
    /// ([`CachePolicy`](crate::enrichment::CachePolicy)).
    pub enum EnrichmentDataType {
        /// Person data ([`ContactData`](crate::enrichment::ContactData)).
        Contact = "contact",
        /// Company data ([`CompanyData`](crate::enrichment::CompanyData)).
        Company = "company",
        /// An email deliverability verdict.
        EmailVerification = "email_verification",
        /// Social profile links (kept longest: they rarely change).
        SocialLinks = "social_links",
    }
}

impl From<LookupKind> for EnrichmentDataType {
    fn from(kind: LookupKind) -> Self {
        match kind {
            LookupKind::Contact => Self::Contact,
            LookupKind::Company => Self::Company,
            LookupKind::EmailVerification => Self::EmailVerification,
        }
    }
}

/// The first day (UTC) of the month containing `at`: the period of monthly spend.
#[must_use]
pub fn month_of(at: DateTime<Utc>) -> NaiveDate {
    let day = at.date_naive();
    // Day 1 exists in every month, so `with_day(1)` cannot fail; fall back to the day.
    day.with_day(1).unwrap_or(day)
}

/// Checks that `month` is the first day of a month (`Invalid` otherwise).
pub fn validate_month(month: NaiveDate) -> Result<(), ValidationError> {
    if month.day() == 1 {
        Ok(())
    } else {
        Err(ValidationError::new(
            "month",
            "must be the first day of a month",
        ))
    }
}

/// One cached lookup result, keyed by (workspace, data type, subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedEnrichment {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// What kind of data it is.
    pub data_type: EnrichmentDataType,
    /// Opaque subject key (the engine stores a SHA-256 of the normalized subject, never
    /// a raw email).
    pub subject: String,
    /// The provider that answered.
    pub provider: String,
    /// The data, as JSON.
    pub payload: serde_json::Value,
    /// When the provider answered; freshness is measured from here.
    pub fetched_at: DateTime<Utc>,
}

impl CachedEnrichment {
    /// Subject and provider must not be blank.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("enrichment_cache.subject", &self.subject)?;
        require_text("enrichment_cache.provider", &self.provider)?;
        no_nul_json("enrichment_cache.payload", &self.payload)
    }
}

/// One provider lookup and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentUsage {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The provider asked.
    pub provider: String,
    /// What was looked up.
    pub data_type: EnrichmentDataType,
    /// Whether the provider had data.
    pub hit: bool,
    /// Provider credits consumed.
    pub credits: u32,
    /// The money it cost (zero if the provider does not say).
    pub cost: Money,
    /// When the lookup happened; its UTC month is the spend period.
    pub at: DateTime<Utc>,
}

impl EnrichmentUsage {
    /// The provider must not be blank.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("enrichment_usage.provider", &self.provider)
    }

    /// The spend period this usage counts toward ([`month_of`] its time).
    #[must_use]
    pub fn month(&self) -> NaiveDate {
        month_of(self.at)
    }
}

/// The month's spend in one currency just before and just after one recorded usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendTotals {
    /// Spend before this usage, in minor units.
    pub before: i64,
    /// Spend including this usage, in minor units.
    pub after: i64,
}

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
