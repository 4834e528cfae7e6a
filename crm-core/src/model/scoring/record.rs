//! Stored scores: what a store keeps per contact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ContactId, WorkspaceId};
use crate::model::Actor;
use crate::model::rules::require_text;
use crate::model::scoring::breakdown::{Breakdown, Contribution};
use crate::model::scoring::scoring_model::Tier;

/// A manual override of a contact's score. It needs a reason and is audited; while it
/// is set, the contact's effective total and tier are the override's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreOverride {
    /// The total to use, 0 to 100.
    pub total: u8,
    /// The tier of `total` under the model in force when it was set.
    pub tier: Tier,
    /// Why (required, not blank).
    pub reason: String,
    /// Who set it.
    pub actor: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

impl ScoreOverride {
    /// Total at most 100 and a non-blank reason.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.total > 100 {
            return Err(ValidationError::new(
                "score.override.total",
                "must be 0 to 100",
            ));
        }
        require_text("score.override.reason", &self.reason)
    }
}

/// A contact's current score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactScore {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The contact.
    pub contact_id: ContactId,
    /// The computed total, 0 to 100.
    pub total: u8,
    /// The computed tier.
    pub tier: Tier,
    /// The contributions explaining `total` (they sum to `total * 100` centipoints).
    pub breakdown: Vec<Contribution>,
    /// The version of the scoring model the score was computed with.
    pub model_version: i64,
    /// When the score took its current value: a later rescore that computes the same
    /// total, tier, breakdown and model version leaves it (and the row) as it is.
    pub computed_at: DateTime<Utc>,
    /// A manual override, if one is set.
    pub manual_override: Option<ScoreOverride>,
}

impl ContactScore {
    /// A computed score (no override) from an explained breakdown.
    #[must_use]
    pub fn computed(
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        breakdown: Breakdown,
        model_version: i64,
        computed_at: DateTime<Utc>,
    ) -> Self {
        Self {
            workspace_id,
            contact_id,
            total: breakdown.score.total,
            tier: breakdown.score.tier,
            breakdown: breakdown.contributions,
            model_version,
            computed_at,
            manual_override: None,
        }
    }

    /// The total in force: the override's if set, else the computed one.
    #[must_use]
    pub fn effective_total(&self) -> u8 {
        self.manual_override
            .as_ref()
            .map_or(self.total, |o| o.total)
    }

    /// The tier in force: the override's if set, else the computed one.
    #[must_use]
    pub fn effective_tier(&self) -> Tier {
        self.manual_override.as_ref().map_or(self.tier, |o| o.tier)
    }

    /// Stores call this on every write: total at most 100, model version at least 1,
    /// a valid override.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.total > 100 {
            return Err(ValidationError::new("score.total", "must be 0 to 100"));
        }
        if self.model_version < 1 {
            return Err(ValidationError::new(
                "score.model_version",
                "must be at least 1",
            ));
        }
        self.manual_override
            .as_ref()
            .map_or(Ok(()), ScoreOverride::validate)
    }
}

/// The outcome of writing one score: the effective tier before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreWritten {
    /// The contact.
    pub contact_id: ContactId,
    /// The effective tier before the write; `None` if the contact had no score.
    pub previous: Option<Tier>,
    /// The effective tier after the write.
    pub current: Tier,
}
