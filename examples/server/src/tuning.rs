//! [`DispatchTuning`]: the outbox dispatcher's knobs from the environment, for operators
//! sizing a deployment and for tests that need a dead process's claims back in seconds
//! rather than minutes.
//!
//! | variable | engine default | meaning |
//! |---|---|---|
//! | `CRM_DISPATCH_BATCH_SIZE` | 100 | messages claimed per batch (1 to 1000) |
//! | `CRM_DISPATCH_CONCURRENCY` | 32 | sends in flight at once per process |
//! | `CRM_DISPATCH_LEASE_SECONDS` | 300 | how long a claim is held; a dead process's claims are taken over this long (plus 30 s of allowed clock skew) after they were made |
//! | `CRM_DISPATCH_REAP_SECONDS` | 60 | how often expired claims are looked for |

use std::str::FromStr;

use chrono::Duration;
use crm_core::outreach::dispatch::DispatcherConfig;

use crate::config::{ConfigError, Env};

/// The dispatcher settings the environment overrides; `None` keeps the engine's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchTuning {
    /// `CRM_DISPATCH_BATCH_SIZE`.
    pub batch_size: Option<u32>,
    /// `CRM_DISPATCH_CONCURRENCY`.
    pub concurrency: Option<usize>,
    /// `CRM_DISPATCH_LEASE_SECONDS`.
    pub lease_seconds: Option<u32>,
    /// `CRM_DISPATCH_REAP_SECONDS`.
    pub reap_seconds: Option<u32>,
}

impl DispatchTuning {
    /// Reads the variables; each must be a positive integer (the batch at most 1000).
    ///
    /// # Errors
    /// The first variable that is not.
    pub fn read(env: &dyn Env) -> Result<Self, ConfigError> {
        let batch_size = positive::<u32>(env, "CRM_DISPATCH_BATCH_SIZE")?;
        if batch_size.is_some_and(|b| b > 1000) {
            return Err(ConfigError {
                variable: "CRM_DISPATCH_BATCH_SIZE",
                reason: "must be at most 1000".to_owned(),
            });
        }
        Ok(Self {
            batch_size,
            concurrency: positive(env, "CRM_DISPATCH_CONCURRENCY")?,
            lease_seconds: positive(env, "CRM_DISPATCH_LEASE_SECONDS")?,
            reap_seconds: positive(env, "CRM_DISPATCH_REAP_SECONDS")?,
        })
    }

    /// `config` with the overrides applied.
    #[must_use]
    pub fn apply(&self, mut config: DispatcherConfig) -> DispatcherConfig {
        if let Some(batch) = self.batch_size {
            config = config.with_batch_size(batch);
        }
        if let Some(concurrency) = self.concurrency {
            config = config.with_concurrency(concurrency);
        }
        if let Some(lease) = self.lease_seconds {
            config = config.with_lease_ttl(Duration::seconds(i64::from(lease)));
        }
        if let Some(reap) = self.reap_seconds {
            config = config.with_reap_interval(Some(Duration::seconds(i64::from(reap))));
        }
        config
    }
}

fn positive<T: FromStr + Default + PartialEq>(
    env: &dyn Env,
    variable: &'static str,
) -> Result<Option<T>, ConfigError> {
    let Some(raw) = env.var(variable) else {
        return Ok(None);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if value != T::default() => Ok(Some(value)),
        _ => Err(ConfigError {
            variable,
            reason: "must be a positive whole number".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unset_keeps_the_engine_defaults() {
        let tuning = DispatchTuning::read(&env(&[])).unwrap();
        assert_eq!(tuning, DispatchTuning::default());
        assert_eq!(
            tuning.apply(DispatcherConfig::default()).batch_size(),
            DispatcherConfig::default().batch_size()
        );
    }

    #[test]
    fn set_values_reach_the_dispatcher() {
        let tuning = DispatchTuning::read(&env(&[
            ("CRM_DISPATCH_BATCH_SIZE", "50"),
            ("CRM_DISPATCH_CONCURRENCY", "8"),
            ("CRM_DISPATCH_LEASE_SECONDS", "10"),
            ("CRM_DISPATCH_REAP_SECONDS", "2"),
        ]))
        .unwrap();
        let config = tuning.apply(DispatcherConfig::default());
        assert_eq!(config.batch_size(), 50);
        assert_eq!(config.concurrency(), 8);
        assert_eq!(config.lease_ttl(), Duration::seconds(10));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (variable, value) in [
            ("CRM_DISPATCH_BATCH_SIZE", "0"),
            ("CRM_DISPATCH_BATCH_SIZE", "5000"),
            ("CRM_DISPATCH_CONCURRENCY", "-1"),
            ("CRM_DISPATCH_LEASE_SECONDS", "soon"),
        ] {
            let error = DispatchTuning::read(&env(&[(variable, value)])).unwrap_err();
            assert_eq!(error.variable, variable);
        }
    }
}
