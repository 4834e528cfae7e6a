//! Approval policies: who decides whether a send may go out.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::ApprovalRuleId;
use crate::model::OutboxMessage;

/// What the policy is asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    /// The message to send.
    pub message: OutboxMessage,
    /// Drafting confidence, 0.0 to 1.0, if known.
    pub confidence: Option<f64>,
    /// Template identity, for streak rules.
    pub template_key: Option<String>,
    /// Whether the sequence step demands a human regardless of rules.
    pub step_requires_approval: bool,
    /// The decision time.
    pub now: DateTime<Utc>,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalDecision {
    /// Send without asking; `rule` names the rule that allowed it.
    AutoApprove {
        /// The deciding rule.
        rule: ApprovalRuleId,
    },
    /// Put it in the inbox for a person.
    RequireHuman {
        /// Why a person is needed.
        reason: String,
    },
    /// Never send it.
    Reject {
        /// Why.
        reason: String,
    },
}

/// Why a policy could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Reading rules or history failed.
    #[error("approval policy could not read its state")]
    Store(#[from] StoreError),
    /// Reading the workspace's settings failed; nothing was decided.
    #[error("approval policy could not read the workspace's settings")]
    Settings {
        /// Whether reading again later may succeed.
        retryable: bool,
        /// The settings provider's error (it names the workspace, never a secret).
        #[source]
        source: crate::error::BoxError,
    },
}

impl PolicyError {
    /// Whether deciding again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Settings { retryable, .. } => *retryable,
        }
    }
}

/// Decides, for one pending send, whether it goes out, waits for a person, or never goes.
///
/// # Contract
/// - MUST NOT approve what suppression or the allowlist forbids; the dispatcher checks
///   those independently, and a policy never overrides them.
/// - SHOULD be deterministic for the same request and stored state.
#[async_trait]
pub trait ApprovalPolicy: Send + Sync + Debug + 'static {
    /// The decision for `request`.
    async fn decide(&self, request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError>;

    /// The decisions for several requests (the dispatcher asks once per batch): one
    /// answer per request, in order, each what [`decide`](Self::decide) would answer
    /// if asked for the requests one after the other in that order. The default does
    /// exactly that; a policy that reads state overrides it to read once per batch.
    async fn decide_many(
        &self,
        requests: &[ApprovalRequest],
    ) -> Vec<Result<ApprovalDecision, PolicyError>> {
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            out.push(self.decide(request).await);
        }
        out
    }
}

/// The default policy: every send waits for a human.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManualApproval;

#[async_trait]
impl ApprovalPolicy for ManualApproval {
    async fn decide(&self, _request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(ApprovalDecision::RequireHuman {
            reason: "manual approval is required for every send".to_owned(),
        })
    }
}

/// Tells a person that an approval item is waiting (Slack, email, ...).
///
/// # Contract
/// - Called once per item that needs a human; a failure MUST NOT lose the item (it
///   stays in the inbox), so callers log and move on or retry.
/// - MUST NOT include secrets; SHOULD keep personal data to what the approver needs.
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Announces `item`.
    async fn approval_needed(
        &self,
        item: &crate::model::ApprovalItem,
    ) -> Result<(), crate::channel::ChannelError>;
}

/// Tells a person that an anomaly was raised (failure rate, bounce spike, ...), next to
/// the approval [`Notifier`] so one integration (Slack, email) can implement both.
///
/// # Contract
/// - Called once per anomaly when it is raised (not again while it stays open); a
///   failure MUST NOT lose the anomaly (it stays open in the store), so callers log and
///   move on.
/// - MUST NOT include secrets; an anomaly holds counts and rates, never addresses.
#[async_trait]
pub trait AnomalyNotifier: Send + Sync + Debug + 'static {
    /// Announces `anomaly`, just raised.
    async fn anomaly_raised(
        &self,
        anomaly: &crate::model::Anomaly,
    ) -> Result<(), crate::channel::ChannelError>;
}
