//! Errors shared by every part of the engine.
//!
//! Each error says what happened and whether trying again can help
//! ([`StoreError::is_retryable`]). Backend sources stay typed and boxed.

use std::borrow::Cow;
use std::fmt;

/// A boxed error source from a backend (database driver, HTTP client, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Input that breaks a rule of the domain model: an empty name, a malformed email,
/// negative money. Always permanent: the same input fails the same way again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl ValidationError {
    /// A validation failure of `field` for `reason`.
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field (or entity) that failed validation.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it failed, in words a developer can act on.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Shortcut for "this string field must not be empty or blank".
pub(crate) fn require_non_blank(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// The coarse class of a [`StoreError`], for retry decisions and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The row does not exist in this workspace.
    NotFound,
    /// The row changed since it was read (optimistic concurrency).
    VersionConflict,
    /// A uniqueness rule was broken.
    Conflict,
    /// A referenced row does not exist in this workspace.
    InvalidReference,
    /// A lease or claim is no longer held by the caller.
    LeaseLost,
    /// The input failed validation.
    Invalid,
    /// The backend does not support the operation.
    NotSupported,
    /// The backend is temporarily unreachable or overloaded.
    Unavailable,
    /// Any other backend failure.
    Backend,
}

/// Error returned by every [`Store`](crate::store::Store) method.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No row with this id exists in the caller's workspace. A row of another workspace
    /// is reported the same way, so tenants never learn about each other's ids.
    #[error("{entity} {id} not found")]
    NotFound {
        /// Entity name, e.g. `"contact"`.
        entity: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// Compare-and-set failed: the row's version is not the one the caller read.
    #[error(
        "{entity} {id} was modified concurrently (expected version {expected}, found {actual})"
    )]
    VersionConflict {
        /// Entity name.
        entity: &'static str,
        /// The row id.
        id: String,
        /// The version the caller based its change on.
        expected: i64,
        /// The version the store holds.
        actual: i64,
    },
    /// A uniqueness rule was broken (for example a second contact with the same email
    /// in one workspace).
    #[error("{entity} conflicts with an existing row: {detail}")]
    Conflict {
        /// Entity name.
        entity: &'static str,
        /// Which rule was broken.
        detail: String,
    },
    /// The row refers to another row that does not exist in the same workspace.
    #[error("referenced {entity} {id} does not exist in this workspace")]
    InvalidReference {
        /// The referenced entity.
        entity: &'static str,
        /// The referenced id.
        id: String,
    },
    /// The caller's claim or lease was taken over, released or never existed: its
    /// fencing token no longer matches.
    #[error("lease on {entity} {id} is no longer held by the caller")]
    LeaseLost {
        /// Entity name (`"job"`, `"outbox_message"`, `"lease"`).
        entity: &'static str,
        /// The row id or lease name.
        id: String,
    },
    /// The input failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The backend does not implement this operation.
    #[error("{operation} is not supported by the {backend} store")]
    NotSupported {
        /// The operation asked for.
        operation: &'static str,
        /// The backend's name.
        backend: &'static str,
    },
    /// The backend is temporarily unavailable (connection refused, pool timeout,
    /// serialization failure). Retrying later may succeed.
    #[error("{backend} store temporarily unavailable")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure; retrying will not help.
    #[error("{backend} store failed")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A [`StoreError::NotFound`] for `id`.
    pub fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// A [`StoreError::InvalidReference`] for `id`.
    pub fn invalid_reference(entity: &'static str, id: impl fmt::Display) -> Self {
        Self::InvalidReference {
            entity,
            id: id.to_string(),
        }
    }

    /// A [`StoreError::LeaseLost`] for `id`.
    pub fn lease_lost(entity: &'static str, id: impl fmt::Display) -> Self {
        Self::LeaseLost {
            entity,
            id: id.to_string(),
        }
    }

    /// A [`StoreError::Conflict`] with `detail`.
    pub fn conflict(entity: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            entity,
            detail: detail.into(),
        }
    }

    /// The error's class.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::NotFound { .. } => StoreErrorKind::NotFound,
            Self::VersionConflict { .. } => StoreErrorKind::VersionConflict,
            Self::Conflict { .. } => StoreErrorKind::Conflict,
            Self::InvalidReference { .. } => StoreErrorKind::InvalidReference,
            Self::LeaseLost { .. } => StoreErrorKind::LeaseLost,
            Self::Invalid(_) => StoreErrorKind::Invalid,
            Self::NotSupported { .. } => StoreErrorKind::NotSupported,
            Self::Unavailable { .. } => StoreErrorKind::Unavailable,
            Self::Backend { .. } => StoreErrorKind::Backend,
        }
    }

    /// Whether the same call may succeed if simply tried again later. A version
    /// conflict is retryable only after re-reading the row, so it is not counted here.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let unavailable = StoreError::Unavailable {
            backend: "test",
            source: "connection refused".into(),
        };
        assert!(unavailable.is_retryable());
        assert!(!StoreError::not_found("contact", "x").is_retryable());
        assert_eq!(
            StoreError::from(ValidationError::new("name", "must not be empty")).kind(),
            StoreErrorKind::Invalid
        );
    }

    #[test]
    fn blank_strings_are_rejected() {
        assert!(require_non_blank("name", "  ").is_err());
        assert!(require_non_blank("name", "Ada").is_ok());
    }
}
