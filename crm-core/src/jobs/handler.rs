//! Job handlers, their errors, and the registry a worker dispatches through.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, StoreErrorKind};
use crate::model::Job;

/// Why a handler did not finish a job, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A transient failure: the worker retries the job after a backoff (or after
    /// `retry_after`, when given) until its attempts run out, then dead-letters it.
    #[error("retryable job failure: {reason}")]
    Retryable {
        /// What went wrong, stored as the job's `last_error`. Never put secrets, message
        /// bodies or raw addresses here.
        reason: String,
        /// When the failure says how long to wait (a provider's `Retry-After`), the
        /// worker waits exactly this long instead of its own backoff.
        retry_after: Option<Duration>,
    },
    /// The same input will fail the same way again: the job is dead-lettered at once.
    #[error("permanent job failure: {reason}")]
    Permanent {
        /// What went wrong, stored as the dead-letter reason.
        reason: String,
    },
}

impl JobError {
    /// A retryable failure with the worker's own backoff.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A retryable failure to be tried again after `retry_after`.
    pub fn retry_after(reason: impl Into<String>, retry_after: Duration) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: Some(retry_after),
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }

    /// Whether the worker should try the job again.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The failure's reason, as stored on the job.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Retryable { reason, .. } | Self::Permanent { reason } => reason,
        }
    }
}

/// Store errors inside a handler: an unavailable backend, a lost race on a versioned
/// row (`VersionConflict`) or a lost lease are retryable; everything else (missing
/// rows, invalid input, unsupported operations) is permanent.
impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        let retryable = err.is_retryable()
            || matches!(
                err.kind(),
                StoreErrorKind::VersionConflict | StoreErrorKind::LeaseLost
            );
        if retryable {
            Self::retryable(err.to_string())
        } else {
            Self::permanent(err.to_string())
        }
    }
}

/// What a handler learns about the attempt it runs, besides the job itself.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobContext {
    /// The name of the claim loop running the job (`"{worker}-{loop}"`).
    pub worker: String,
    /// The worker clock's time when the attempt started.
    pub now: DateTime<Utc>,
    /// The fencing token of the claim.
    pub lease_token: i64,
}

impl JobContext {
    /// A context for an attempt started at `now` by `worker` under `lease_token`.
    #[must_use]
    pub fn new(worker: impl Into<String>, now: DateTime<Utc>, lease_token: i64) -> Self {
        Self {
            worker: worker.into(),
            now,
            lease_token,
        }
    }
}

/// Runs jobs of one kind.
///
/// # Contract
/// - Jobs run at least once: a handler MUST be idempotent. A job may run again after a
///   crash, after its lease expired (a handler that outlives the worker's lease TTL may
///   be run concurrently by another worker), or after a retryable failure.
/// - `Ok(())` completes the job; [`JobError::Retryable`] retries it after a backoff
///   until its attempts run out; [`JobError::Permanent`] dead-letters it at once.
/// - A handler never panics on its payload: a malformed payload is `Permanent`. (A
///   panic is caught by the worker and treated as a retryable failure.)
/// - Error reasons are stored and logged: never put secrets, message bodies or raw
///   addresses in them.
#[async_trait]
pub trait JobHandler: Send + Sync + Debug + 'static {
    /// Does the work of `job`.
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError>;
}

/// Maps job kinds to their handlers. A worker claims only the kinds registered here.
#[derive(Debug, Clone, Default)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, Arc<dyn JobHandler>>,
}

impl HandlerRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind`, replacing any earlier handler of that kind.
    #[must_use]
    pub fn with(mut self, kind: impl Into<String>, handler: Arc<dyn JobHandler>) -> Self {
        self.register(kind, handler);
        self
    }

    /// Registers `handler` for `kind`, returning the handler it replaced, if any.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        handler: Arc<dyn JobHandler>,
    ) -> Option<Arc<dyn JobHandler>> {
        self.handlers.insert(kind.into(), handler)
    }

    /// The handler of `kind`.
    #[must_use]
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(kind)
    }

    /// The registered kinds, in ascending order.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Whether no handler is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Noop;

    #[async_trait]
    impl JobHandler for Noop {
        async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    fn errors_say_whether_to_retry() {
        assert!(JobError::retryable("timeout").is_retryable());
        assert!(!JobError::permanent("bad payload").is_retryable());
        assert_eq!(
            JobError::retry_after("rate limited", Duration::from_secs(3)).reason(),
            "rate limited"
        );
        let unavailable = StoreError::Unavailable {
            backend: "test",
            source: "down".into(),
        };
        assert!(JobError::from(unavailable).is_retryable());
        assert!(!JobError::from(StoreError::not_found("job", "x")).is_retryable());
    }

    #[test]
    fn registry_lists_kinds_in_order() {
        let registry = HandlerRegistry::new()
            .with("b.kind", Arc::new(Noop))
            .with("a.kind", Arc::new(Noop));
        assert_eq!(registry.kinds().collect::<Vec<_>>(), ["a.kind", "b.kind"]);
        assert!(registry.get("a.kind").is_some());
        assert!(registry.get("c.kind").is_none());
        assert!(!registry.is_empty());
    }
}
