//! Enrichment: provider lookups of contact and company data, orchestrated.
//!
//! - [`EnrichmentProvider`] and its types are the seam a data vendor implements; they
//!   live in the port module [`crate::enrichment_provider`] and keep their historic
//!   paths here (`crm_core::enrichment::Lookup`, `crm_core::enrichment::provider::*`).
//! - [`cache`]: freshness per data type and hashed subject keys.
//! - [`waterfall`]: providers in order per lookup kind, stop at the first hit.
//! - [`budget`]: the monthly budget, its alert thresholds and the pause at 100 %.
//! - [`rate_limit`]: per-provider limits, in process.
//! - [`auto`]: `contact.created` enriches the new contact when the workspace enables it.
//! - [`Enricher`]: the service that applies all of the above against a store.

pub mod auto;
pub mod budget;
pub mod cache;
mod error;
pub mod rate_limit;
mod service;
pub mod waterfall;

/// The provider seam: re-exported from [`crate::enrichment_provider`], the port module
/// that provider crates import.
pub mod provider {
    pub use crate::enrichment_provider::*;
}

pub use auto::{AutoEnrichment, ENRICH_CONTACT_JOB, auto_enrich_routes};
pub use budget::BudgetPolicy;
pub use cache::CachePolicy;
pub use error::EnricherError;
pub use provider::*;
pub use rate_limit::{RateLimit, RateLimiter};
pub use service::{
    BULK_CONFIRMATION_THRESHOLD, BulkConfirmation, Enriched, Enricher, SocialLinks, Source,
};
pub use waterfall::{Attempt, AttemptResult, Waterfall};
