//! Pipelines, stages and deals.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{AccountId, ContactId, DealId, PipelineId, StageId, UserId, WorkspaceId};
use crate::model::rules::{require_text, stored_time};
use crate::money::Money;

/// Whether a stage is still open or closes the deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    /// The deal is still being worked.
    Open,
    /// The deal closed successfully.
    Won,
    /// The deal closed unsuccessfully.
    Lost,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Id, unique within the pipeline.
    pub id: StageId,
    /// Display name, unique within the pipeline.
    pub name: String,
    /// Win probability in percent (0 to 100), used by the weighted forecast.
    pub probability: u8,
    /// Open, won or lost.
    pub outcome: StageOutcome,
}

impl Stage {
    /// An open stage with `probability` percent.
    pub fn open(name: impl Into<String>, probability: u8) -> Result<Self, ValidationError> {
        Self::new(name, probability, StageOutcome::Open)
    }

    /// A stage with an explicit outcome.
    pub fn new(
        name: impl Into<String>,
        probability: u8,
        outcome: StageOutcome,
    ) -> Result<Self, ValidationError> {
        let stage = Self {
            id: StageId::new(),
            name: name.into().trim().to_owned(),
            probability,
            outcome,
        };
        require_text("stage.name", &stage.name)?;
        if probability > 100 {
            return Err(ValidationError::new(
                "stage.probability",
                "must be 0 to 100",
            ));
        }
        Ok(stage)
    }
}

/// A named, ordered list of stages a deal moves through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Id.
    pub id: PipelineId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Stages in order; at least one.
    pub stages: Vec<Stage>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Pipeline {
    /// Validates and builds a version-1 pipeline.
    pub fn create(
        workspace_id: WorkspaceId,
        name: impl Into<String>,
        stages: Vec<Stage>,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let pipeline = Self {
            id: PipelineId::new(),
            workspace_id,
            name: name.into().trim().to_owned(),
            stages,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        pipeline.validate()?;
        Ok(pipeline)
    }

    /// Checks the stored-row rules: a name, at least one stage, unique stage ids and names.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("pipeline.name", &self.name)?;
        if self.stages.is_empty() {
            return Err(ValidationError::new(
                "pipeline.stages",
                "needs at least one stage",
            ));
        }
        for (i, stage) in self.stages.iter().enumerate() {
            require_text("stage.name", &stage.name)?;
            if stage.probability > 100 {
                return Err(ValidationError::new(
                    "stage.probability",
                    "must be 0 to 100",
                ));
            }
            let later = &self.stages[i + 1..];
            if later
                .iter()
                .any(|s| s.id == stage.id || s.name == stage.name)
            {
                return Err(ValidationError::new(
                    "pipeline.stages",
                    format!("stage {:?} appears twice", stage.name),
                ));
            }
        }
        Ok(())
    }

    /// The stage with `id`, if it belongs to this pipeline.
    #[must_use]
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// A sales opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    /// Id.
    pub id: DealId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The pipeline the deal is on.
    pub pipeline_id: PipelineId,
    /// The current stage; must belong to the pipeline.
    pub stage_id: StageId,
    /// Display name.
    pub name: String,
    /// Value of the deal.
    pub amount: Money,
    /// The company, in the same workspace.
    pub account_id: Option<AccountId>,
    /// The main contact, in the same workspace.
    pub contact_id: Option<ContactId>,
    /// Owner.
    pub owner_id: Option<UserId>,
    /// Expected close date.
    pub expected_close: Option<NaiveDate>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

/// Input for [`Deal::create`].
#[derive(Debug, Clone)]
pub struct NewDeal {
    /// Pipeline.
    pub pipeline_id: PipelineId,
    /// Starting stage.
    pub stage_id: StageId,
    /// Name.
    pub name: String,
    /// Value.
    pub amount: Money,
    /// Company.
    pub account_id: Option<AccountId>,
    /// Main contact.
    pub contact_id: Option<ContactId>,
    /// Owner.
    pub owner_id: Option<UserId>,
    /// Expected close date.
    pub expected_close: Option<NaiveDate>,
}

impl Deal {
    /// Validates and builds a version-1 deal. That the stage belongs to the pipeline
    /// and the references exist is checked by the store, which can see them.
    pub fn create(
        workspace_id: WorkspaceId,
        input: NewDeal,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let deal = Self {
            id: DealId::new(),
            workspace_id,
            pipeline_id: input.pipeline_id,
            stage_id: input.stage_id,
            name: input.name.trim().to_owned(),
            amount: input.amount,
            account_id: input.account_id,
            contact_id: input.contact_id,
            owner_id: input.owner_id,
            expected_close: input.expected_close,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        deal.validate()?;
        Ok(deal)
    }

    /// Checks the stored-row rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("deal.name", &self.name)?;
        if self.amount.minor_units() < 0 {
            return Err(ValidationError::new("deal.amount", "must not be negative"));
        }
        if self.version < 1 {
            return Err(ValidationError::new("version", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn pipelines_need_unique_named_stages() {
        let ws = WorkspaceId::new();
        let now = DateTime::UNIX_EPOCH;
        assert!(Pipeline::create(ws, "Sales", vec![], now).is_err());
        let lead = Stage::open("Lead", 10).unwrap();
        let mut dup = Stage::open("Lead", 20).unwrap();
        assert!(Pipeline::create(ws, "Sales", vec![lead.clone(), dup.clone()], now).is_err());
        dup.name = "Qualified".into();
        let p = Pipeline::create(ws, "Sales", vec![lead.clone(), dup], now).unwrap();
        assert_eq!(p.stage(lead.id).unwrap().name, "Lead");
        assert!(Stage::open("Won", 101).is_err());
        assert!(Stage::open(" ", 1).is_err());
    }

    #[test]
    fn deals_need_a_name() {
        let stage = Stage::open("Lead", 10).unwrap();
        let input = NewDeal {
            pipeline_id: PipelineId::new(),
            stage_id: stage.id,
            name: "".into(),
            amount: Money::zero(Currency::new("EUR").unwrap()),
            account_id: None,
            contact_id: None,
            owner_id: None,
            expected_close: None,
        };
        assert_eq!(
            Deal::create(WorkspaceId::new(), input, DateTime::UNIX_EPOCH)
                .unwrap_err()
                .field(),
            "deal.name"
        );
    }
}
