//! Enrichment: provider lookups of contact and company data, orchestrated.
//!
//! - [`EnrichmentProvider`] and its types ([`provider`]) are the seam a data vendor
//!   implements; they keep their historic paths (`crm_core::enrichment::Lookup`, ...).
//! - [`cache`]: freshness per data type and hashed subject keys.
//! - [`waterfall`]: providers in order per lookup kind, stop at the first hit.
//! - [`budget`]: the monthly budget, its alert thresholds and the pause at 100 %.
//! - [`rate_limit`]: per-provider limits, in process.
//! - [`Enricher`]: the service that applies all of the above against a store.

pub mod budget;
pub mod cache;
mod error;
pub mod provider;
pub mod rate_limit;
mod service;
pub mod waterfall;

pub use budget::BudgetPolicy;
pub use cache::CachePolicy;
pub use error::EnricherError;
pub use provider::*;
pub use rate_limit::{RateLimit, RateLimiter};
pub use service::{
    BULK_CONFIRMATION_THRESHOLD, BulkConfirmation, Enriched, Enricher, SocialLinks, Source,
};
pub use waterfall::{Attempt, AttemptResult, Waterfall};
