//! Why a request was refused, or an API key operation failed.

use crate::error::{BoxError, StoreError, ValidationError};
use crate::model::ApiScope;

/// The error of every [`ApiKeys`](crate::access::ApiKeys) operation.
///
/// A host answers 401 for [`is_unauthenticated`](Self::is_unauthenticated), 403 for
/// [`is_forbidden`](Self::is_forbidden), 400 for `Invalid` and 503 for a retryable
/// store error. Messages never hold the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// No key was presented.
    #[error("no API key was presented")]
    Missing,
    /// What was presented is not an API key of this product.
    #[error("the API key is malformed")]
    Malformed,
    /// No key with this prefix exists, or the secret does not match it.
    #[error("the API key is not known")]
    Unknown,
    /// The key's expiry has passed.
    #[error("the API key has expired")]
    Expired,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key is valid but lacks the scope the operation needs.
    #[error("the API key lacks the scope {0}")]
    MissingScope(ApiScope),
    /// The issue request broke a rule (blank name, no scope, expiry not in the future).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed (including `NotFound` for revoking a key the workspace does
    /// not have).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's random number generator failed while minting a token.
    #[error("the operating system's random number generator failed")]
    Randomness(#[source] BoxError),
}

impl AccessError {
    /// Whether the caller is not authenticated (missing, malformed, unknown, expired
    /// or revoked key): HTTP 401.
    #[must_use]
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::Malformed | Self::Unknown | Self::Expired | Self::Revoked
        )
    }

    /// Whether the caller is authenticated but lacks a scope: HTTP 403.
    #[must_use]
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::MissingScope(_))
    }

    /// Whether the same call may succeed if tried again later (a store that is
    /// temporarily unavailable, a random number generator not ready yet).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Randomness(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_classify_for_http() {
        for e in [
            AccessError::Missing,
            AccessError::Malformed,
            AccessError::Unknown,
            AccessError::Expired,
            AccessError::Revoked,
        ] {
            assert!(e.is_unauthenticated() && !e.is_forbidden() && !e.is_retryable());
        }
        let scope = AccessError::MissingScope(ApiScope::InboxWrite);
        assert!(scope.is_forbidden() && !scope.is_unauthenticated());
        assert_eq!(scope.to_string(), "the API key lacks the scope inbox:write");
        let down = AccessError::Store(StoreError::Unavailable {
            backend: "test",
            source: "refused".into(),
        });
        assert!(down.is_retryable() && !down.is_unauthenticated());
    }
}
