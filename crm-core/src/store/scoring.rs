//! Lead scoring: models, contact scores and bulk reads of scoring inputs.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, ValidationError};
use crate::ids::{ContactId, WorkspaceId};
use crate::model::NewEvent;
use crate::model::scoring::ScoringInput;
use crate::model::scoring::{ContactScore, ScoreOverride, ScoreWritten};
use crate::model::scoring::{ScoringModel, Tier};
use crate::store::Page;

/// Derives the events to append with a batch of score writes from their outcome
/// (see [`ScoringStore::upsert_contact_scores_with_events`]).
pub type ScoreEvents<'a> =
    dyn Fn(&[ScoreWritten]) -> Result<Vec<NewEvent>, ValidationError> + Send + Sync + 'a;

/// Scoring models (versioned), contact scores, and scoring inputs.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
/// Scores are keyed by (workspace, contact); a contact has at most one current score.
#[async_trait]
pub trait ScoringStore: Send + Sync + Debug {
    /// Saves a new version of the workspace's model, with compare-and-set: the first
    /// model MUST have version 1 and every later one the current version + 1;
    /// otherwise `VersionConflict` (with the current version, 0 when none). Every
    /// version stays readable ([`get_scoring_model`](Self::get_scoring_model)). Calls
    /// [`ScoringModel::validate`] first (`Invalid`).
    async fn save_scoring_model(&self, model: &ScoringModel) -> Result<ScoringModel, StoreError>;

    /// The workspace's current (highest) model version, if any was saved.
    async fn current_scoring_model(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<ScoringModel>, StoreError>;

    /// One version of the workspace's model, or `NotFound`.
    async fn get_scoring_model(
        &self,
        workspace_id: WorkspaceId,
        version: i64,
    ) -> Result<ScoringModel, StoreError>;

    /// Writes computed scores in one atomic batch (1 to 1000 rows, else `Invalid`).
    ///
    /// Each row inserts or replaces the contact's computed fields (total, tier,
    /// breakdown, model version, computed time). A row whose total, tier, breakdown and
    /// model version equal the stored ones is not rewritten: the stored row, its
    /// `computed_at` included (the time the score took its current value), stays as it
    /// is, so a nightly rescore writes only the scores that changed. An existing manual
    /// override is kept
    /// (a new row's `manual_override` is ignored: set it with
    /// [`set_score_override`](Self::set_score_override)). Every row MUST belong to
    /// `workspace_id` and name a distinct contact (`Invalid`); a contact missing from the
    /// workspace is `InvalidReference` and nothing is written. Returns, in input order,
    /// each contact's effective tier before and after the write.
    async fn upsert_contact_scores(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
    ) -> Result<Vec<ScoreWritten>, StoreError>;

    /// Writes computed scores exactly as
    /// [`upsert_contact_scores`](Self::upsert_contact_scores) does and, in the same
    /// atomic step, appends the events `events_for` derives from the outcome (in its
    /// order, idempotent by key as in
    /// [`EventStore::append_events`](crate::store::EventStore::append_events)). Either
    /// everything is written or nothing is: a crash never leaves a tier change without
    /// its event. An error from `events_for` (`Invalid`) or from the events' checks
    /// writes nothing. `events_for` runs inside that step (under the store's lock or
    /// in its transaction): it must be quick and must not call the store.
    async fn upsert_contact_scores_with_events(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
        events_for: &ScoreEvents<'_>,
    ) -> Result<Vec<ScoreWritten>, StoreError>;

    /// The contact's current score, if it was ever scored.
    async fn get_contact_score(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Option<ContactScore>, StoreError>;

    /// Sets (`Some`) or clears (`None`) the manual override of a scored contact,
    /// atomically; `NotFound` if the contact has no score. Returns the effective tier
    /// before and after.
    async fn set_score_override(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        manual_override: Option<&ScoreOverride>,
    ) -> Result<ScoreWritten, StoreError>;

    /// Scores whose effective tier is `tier`, ascending by contact id (see [`Page`]).
    async fn list_scores_by_tier(
        &self,
        workspace_id: WorkspaceId,
        tier: Tier,
        page: Page<ContactId>,
    ) -> Result<Vec<ContactScore>, StoreError>;

    /// Scoring inputs of the workspace's contacts, ascending by contact id (see
    /// [`Page`]): one per contact, derived as [`ScoringInput::from_records`] does, from
    /// the contact's account and its activities that occurred at or after `since`
    /// (older ones are past every decay). Occurrence lists are ascending.
    async fn list_scoring_inputs(
        &self,
        workspace_id: WorkspaceId,
        since: DateTime<Utc>,
        page: Page<ContactId>,
    ) -> Result<Vec<ScoringInput>, StoreError>;

    /// Scoring inputs of the given contacts (at most 1000, else `Invalid`), as
    /// [`list_scoring_inputs`](Self::list_scoring_inputs), ascending by contact id;
    /// contacts missing from the workspace are left out.
    async fn scoring_inputs_for(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        since: DateTime<Utc>,
    ) -> Result<Vec<ScoringInput>, StoreError>;
}
