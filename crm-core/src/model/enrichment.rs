//! Enrichment data the store keeps: the lookup cache, usage records and the monthly
//! spend, and the [`LookupKind`] that names what a provider was asked.
//!
//! These are the values the [`EnrichmentStore`](crate::store::EnrichmentStore)
//! exchanges, so they sit on the model floor and import nothing from the enrichment
//! engine or the provider port; both re-export them under their historic paths.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::model::rules::{no_nul_json, require_text};
use crate::money::Money;
use crate::text_enum::text_enum;

/// The kinds of lookup a provider may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LookupKind {
    /// Person data from an email (or name + domain).
    Contact,
    /// Company data from a domain.
    Company,
    /// Deliverability of an email address.
    EmailVerification,
}

text_enum! {
    /// A kind of enrichment data; each has its own cache freshness (the enrichment
    /// engine's `CachePolicy`).
    pub enum EnrichmentDataType {
        /// Person data (a provider's `ContactData`).
        Contact = "contact",
        /// Company data (a provider's `CompanyData`).
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
