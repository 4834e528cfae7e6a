//! Credentials by reference: `secret://<id>:<version>`.
//!
//! Configuration holds references, never values; a [`SecretResolver`] turns a reference
//! into a [`SecretString`] (from the `secrecy` crate) whose `Debug` is redacted, so a
//! credential never reaches a log by accident.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};

use crate::error::ValidationError;

/// A parsed `secret://<id>:<version>` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    id: String,
    version: String,
}

impl SecretRef {
    /// Parses `secret://<id>:<version>`. The id may contain `/`, `-`, `_` and `.`; the
    /// version is whatever follows the last `:` and must not be empty.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let rest = input
            .strip_prefix("secret://")
            .ok_or_else(|| ValidationError::new("secret_ref", "must start with secret://"))?;
        let (id, version) = rest
            .rsplit_once(':')
            .ok_or_else(|| ValidationError::new("secret_ref", "must be secret://<id>:<version>"))?;
        let id_ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        let version_ok = !version.is_empty()
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok || !version_ok {
            return Err(ValidationError::new(
                "secret_ref",
                "id and version must be non-empty and use only letters, digits, '/', '-', '_', '.'",
            ));
        }
        Ok(Self {
            id: id.to_owned(),
            version: version.to_owned(),
        })
    }

    /// The secret's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret's version (`latest` is an ordinary version name to the resolver).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret://{}:{}", self.id, self.version)
    }
}

impl FromStr for SecretRef {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// Serialized as its `secret://<id>:<version>` text, so stored settings stay readable.
impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a secret could not be resolved. Messages name the reference, never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret with this id and version exists.
    #[error("secret {reference} not found")]
    NotFound {
        /// The reference looked up.
        reference: SecretRef,
    },
    /// The backing source could not be read (file missing, permission denied, ...).
    #[error("secret source unavailable for {reference}")]
    Unavailable {
        /// The reference looked up.
        reference: SecretRef,
        /// The underlying error.
        #[source]
        source: crate::error::BoxError,
    },
}

impl SecretError {
    /// Whether resolving again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Turns secret references into values.
///
/// # Contract
/// - MUST NOT log or put the value in an error.
/// - SHOULD be cheap to call repeatedly; callers do not cache.
#[async_trait]
pub trait SecretResolver: Send + Sync + fmt::Debug + 'static {
    /// The value behind `reference`.
    async fn resolve(&self, reference: &SecretRef) -> Result<SecretString, SecretError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_parse_and_print() {
        let r = SecretRef::parse("secret://resend/api-key:3").unwrap();
        assert_eq!(r.id(), "resend/api-key");
        assert_eq!(r.version(), "3");
        assert_eq!(r.to_string(), "secret://resend/api-key:3");
    }

    #[test]
    fn malformed_secret_refs_are_rejected() {
        for bad in [
            "resend:1",
            "secret://",
            "secret://id",
            "secret://id:",
            "secret://:1",
            "secret://a b:1",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn secret_strings_do_not_print_their_value() {
        let s = SecretString::from("re_live_123".to_owned());
        assert!(!format!("{s:?}").contains("re_live"));
        assert_eq!(s.expose_secret(), "re_live_123");
    }
}
