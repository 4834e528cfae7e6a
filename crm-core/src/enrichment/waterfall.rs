//! Waterfall order: the providers asked per lookup kind, in order, and the rule that
//! stops at the first hit. Pure: the [`Enricher`](crate::enrichment::Enricher) does
//! the calling.

use std::collections::HashMap;
use std::sync::Arc;

use crate::enrichment::{EnrichmentProvider, LookupKind};

/// Providers per lookup kind, in the order they are asked.
///
/// A provider added for a kind it does not list in
/// [`EnrichmentProvider::kinds`] is ignored for that kind.
#[derive(Debug, Clone, Default)]
pub struct Waterfall {
    chains: HashMap<LookupKind, Vec<Arc<dyn EnrichmentProvider>>>,
}

impl Waterfall {
    /// An empty waterfall: every lookup misses.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `provider` to the chain of `kind` (if it offers `kind`).
    #[must_use]
    pub fn then(mut self, kind: LookupKind, provider: Arc<dyn EnrichmentProvider>) -> Self {
        if provider.kinds().contains(&kind) {
            self.chains.entry(kind).or_default().push(provider);
        }
        self
    }

    /// The providers for `kind`, in order.
    #[must_use]
    pub fn chain(&self, kind: LookupKind) -> &[Arc<dyn EnrichmentProvider>] {
        self.chains
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// What happened when one provider of a chain was asked (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptResult {
    /// The provider had data: the waterfall stops here.
    Hit,
    /// The provider had no data.
    Miss,
    /// Not asked: its rate limit (ours or the one it reported) is used up.
    RateLimited,
    /// Not asked: the monthly budget is spent and lookups are paused.
    BudgetPaused,
    /// Asked, and it failed; `retryable` tells whether asking later may work.
    Failed {
        /// Whether the failure is transient.
        retryable: bool,
    },
}

impl AttemptResult {
    /// Whether the waterfall stops after this attempt: only a hit stops it; a miss, a
    /// skip or a failure moves on to the next provider.
    #[must_use]
    pub const fn stops(&self) -> bool {
        matches!(self, Self::Hit)
    }
}

/// One step of a waterfall, for the caller's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider's name.
    pub provider: &'static str,
    /// What happened.
    pub result: AttemptResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hit_stops() {
        assert!(AttemptResult::Hit.stops());
        assert!(!AttemptResult::Miss.stops());
        assert!(!AttemptResult::RateLimited.stops());
        assert!(!AttemptResult::Failed { retryable: true }.stops());
    }
}
