//! The provider seam: look up data about a contact or a company.
//!
//! A port: the [`EnrichmentProvider`] trait and every type it exchanges (query, data,
//! error, cost, rate-limit state). Provider crates import this module and the model,
//! never the enrichment engine, which re-exports it all under its historic paths.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::address::{Domain, EmailAddress};
use crate::error::BoxError;
use crate::money::Money;

pub use crate::model::enrichment::LookupKind;

/// A hit or a miss. A miss is a normal answer, not an error: the waterfall moves on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Lookup<T> {
    /// The provider knows the subject.
    Found(T),
    /// The provider has no data for it.
    NotFound,
}

/// What to look a person up by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContactQuery {
    /// Email, if known.
    pub email: Option<EmailAddress>,
    /// Given name, if known.
    pub first_name: Option<String>,
    /// Family name, if known.
    pub last_name: Option<String>,
    /// Company domain, if known.
    pub domain: Option<Domain>,
}

/// Person data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContactData {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Email (for finders).
    pub email: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Seniority.
    pub seniority: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
    /// Employer domain.
    pub company_domain: Option<String>,
    /// Location text.
    pub location: Option<String>,
}

/// Company data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompanyData {
    /// Name.
    pub name: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Head count.
    pub employee_count: Option<u32>,
    /// Annual revenue.
    pub annual_revenue: Option<Money>,
    /// Country.
    pub country: Option<String>,
    /// LinkedIn page.
    pub linkedin_url: Option<String>,
}

/// Deliverability verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EmailStatus {
    /// Deliverable.
    Valid,
    /// Not deliverable.
    Invalid,
    /// The domain accepts everything; unknown for this mailbox.
    CatchAll,
    /// Could not tell.
    Unknown,
    /// The provider is still checking (ask again later).
    Pending,
}

/// An email verification result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailVerification {
    /// Verdict.
    pub status: EmailStatus,
    /// Provider score 0 to 100, if given.
    pub score: Option<u8>,
}

/// The provider's rate-limit state as last reported in its response headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitState {
    /// Requests allowed per window.
    pub limit: Option<u64>,
    /// Requests left in the window.
    pub remaining: Option<u64>,
    /// Time until the window resets.
    pub reset_after: Option<Duration>,
}

/// What one lookup costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupCost {
    /// Provider credits consumed.
    pub credits: u32,
    /// The money equivalent, if known.
    pub money: Option<Money>,
}

/// Why a lookup failed (a miss is not a failure: see [`Lookup::NotFound`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrichmentError {
    /// Try again later.
    #[error("transient failure from {provider}: {reason}")]
    Retryable {
        /// Provider name.
        provider: &'static str,
        /// What happened.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Throttled.
    #[error("rate limited by {provider}")]
    RateLimited {
        /// Provider name.
        provider: &'static str,
        /// How long to wait.
        retry_after: Option<Duration>,
    },
    /// Credentials refused.
    #[error("{provider} refused our credentials")]
    Auth {
        /// Provider name.
        provider: &'static str,
    },
    /// Out of credits or plan limit reached.
    #[error("{provider} quota exhausted")]
    QuotaExhausted {
        /// Provider name.
        provider: &'static str,
    },
    /// The request or response was unusable.
    #[error("{provider} failed: {reason}")]
    Permanent {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
    /// The provider does not offer this lookup kind.
    #[error("{provider} does not support {kind:?} lookups")]
    NotSupported {
        /// Provider name.
        provider: &'static str,
        /// The kind asked for.
        kind: LookupKind,
    },
}

impl EnrichmentError {
    /// Whether the same lookup may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::RateLimited { .. })
    }
}

/// A source of contact and company data.
///
/// # Contract
/// - A subject the provider does not know is `Ok(Lookup::NotFound)`, never an error.
/// - A kind the provider does not offer is `Err(EnrichmentError::NotSupported)`; the
///   defaults below answer that, so implement only what the provider offers and list
///   it in [`EnrichmentProvider::kinds`].
/// - MUST NOT log credentials or raw personal data.
#[async_trait]
pub trait EnrichmentProvider: Send + Sync + Debug + 'static {
    /// Provider name, e.g. `"apollo"`.
    fn name(&self) -> &'static str;

    /// The lookup kinds this provider offers.
    fn kinds(&self) -> &'static [LookupKind];

    /// What one lookup of `kind` costs.
    fn cost(&self, kind: LookupKind) -> LookupCost;

    /// The rate-limit state from the most recent response.
    fn rate_limit(&self) -> RateLimitState;

    /// Person data.
    async fn enrich_contact(
        &self,
        _query: &ContactQuery,
    ) -> Result<Lookup<ContactData>, EnrichmentError> {
        Err(EnrichmentError::NotSupported {
            provider: self.name(),
            kind: LookupKind::Contact,
        })
    }

    /// Company data.
    async fn enrich_company(
        &self,
        _domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        Err(EnrichmentError::NotSupported {
            provider: self.name(),
            kind: LookupKind::Company,
        })
    }

    /// Deliverability of an address.
    async fn verify_email(
        &self,
        _email: &EmailAddress,
    ) -> Result<Lookup<EmailVerification>, EnrichmentError> {
        Err(EnrichmentError::NotSupported {
            provider: self.name(),
            kind: LookupKind::EmailVerification,
        })
    }
}
