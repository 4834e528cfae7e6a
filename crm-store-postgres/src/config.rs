//! Connection settings of a [`PostgresStore`](crate::PostgresStore).

use std::time::Duration;

use crm_core::ValidationError;

/// How a [`PostgresStore`](crate::PostgresStore) connects: the schema its tables live in
/// and the size and timeouts of its connection pool.
///
/// ```
/// use std::time::Duration;
/// use crm_store_postgres::PostgresConfig;
///
/// let config = PostgresConfig::default()
///     .with_schema("crm_eu")
///     .with_max_connections(20)
///     .with_acquire_timeout(Duration::from_secs(5));
/// assert_eq!(config.schema(), "crm_eu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    schema: String,
    max_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
}

impl Default for PostgresConfig {
    /// Schema `crm`, 10 connections, a 10 second acquire timeout, idle connections
    /// closed after 10 minutes.
    fn default() -> Self {
        Self {
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }
}

impl PostgresConfig {
    /// The schema used unless [`with_schema`](Self::with_schema) says otherwise.
    pub const DEFAULT_SCHEMA: &'static str = "crm";

    /// Puts the tables in `schema`: 1 to 63 characters of `[a-z0-9_]`, not starting with
    /// a digit. Checked by [`PostgresStore::connect`](crate::PostgresStore::connect).
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The pool's largest number of open connections (at least 1).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// How long a call waits for a free pooled connection before failing with
    /// `StoreError::Unavailable`.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Closes connections idle for longer than `timeout`; `None` keeps them open.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The schema the tables live in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool's largest number of open connections.
    #[must_use]
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// How long a call waits for a pooled connection.
    #[must_use]
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// How long a connection may stay idle in the pool.
    #[must_use]
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Checks the settings a store cannot work without.
    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        validate_schema_name(&self.schema)?;
        if self.max_connections == 0 {
            return Err(ValidationError::new(
                "max_connections",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Accepts `[a-z_][a-z0-9_]{0,62}`: a PostgreSQL identifier that needs no quoting.
pub(crate) fn validate_schema_name(schema: &str) -> Result<(), ValidationError> {
    let bytes = schema.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if first_ok && rest_ok && bytes.len() <= 63 {
        Ok(())
    } else {
        Err(ValidationError::new(
            "schema",
            "must match [a-z_][a-z0-9_]{0,62}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["crm", "_x", "crm_test_1700000000_ab12", &"a".repeat(63)] {
            assert!(validate_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1crm",
            "Crm",
            "crm-x",
            "crm;drop",
            "crm x",
            &"a".repeat(64),
        ] {
            assert!(validate_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_connections_are_rejected() {
        assert!(
            PostgresConfig::default()
                .with_max_connections(0)
                .validate()
                .is_err()
        );
        assert!(PostgresConfig::default().validate().is_ok());
    }
}
