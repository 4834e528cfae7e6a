//! Why an orchestrated enrichment failed (a miss is not a failure).

use crate::enrichment::EnrichmentError;
use crate::error::{StoreError, ValidationError};
use crate::money::Currency;

/// Error of the [`Enricher`](crate::enrichment::Enricher).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnricherError {
    /// The input cannot be looked up (for example a query with neither email nor name).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error("enrichment store failure: {0}")]
    Store(#[from] StoreError),
    /// The workspace's monthly budget is spent and lookups are paused until `month`
    /// ends (cached data is still served).
    #[error("enrichment budget for {month} is spent; lookups are paused")]
    BudgetExhausted {
        /// The month, `YYYY-MM`.
        month: String,
    },
    /// A bulk run of more than the threshold needs a matching [`BulkConfirmation`](crate::enrichment::BulkConfirmation).
    #[error(
        "bulk enrichment of {records} records needs an explicit confirmation (more than {threshold})"
    )]
    ConfirmationRequired {
        /// Records in the run.
        records: usize,
        /// The largest run allowed without confirmation.
        threshold: usize,
    },
    /// A provider prices lookups in another currency than the workspace budget.
    #[error("{provider} prices lookups in {found}, the budget is in {expected}")]
    CurrencyMismatch {
        /// Provider name.
        provider: &'static str,
        /// The budget's currency.
        expected: Currency,
        /// The provider's currency.
        found: Currency,
    },
    /// Every provider asked failed (none missed, none hit); `source` is the last error.
    #[error("every enrichment provider failed; last: {source}")]
    ProvidersFailed {
        /// The last provider error.
        #[source]
        source: EnrichmentError,
        /// Whether any failure was transient.
        retryable: bool,
    },
    /// Stored or provider data did not (de)serialize.
    #[error("enrichment data did not (de)serialize")]
    Data(#[source] serde_json::Error),
}

impl EnricherError {
    /// Whether the same call may succeed later (store unavailable, transient provider
    /// failures). A spent budget is not retryable within its month.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::ProvidersFailed { retryable, .. } => *retryable,
            _ => false,
        }
    }
}
