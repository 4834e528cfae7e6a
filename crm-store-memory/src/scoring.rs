//! Scoring models, contact scores and scoring inputs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::scoring::{
    ContactScore, ScoreOverride, ScoreWritten, ScoringInput, ScoringModel, Tier,
};
use crm_core::model::{Contact, NewEvent};
use crm_core::store::{Page, ScoreEvents, ScoringStore, validate_limit};
use crm_core::{StoreError, ValidationError, events};

use crate::queue::{append_changes, append_events, check_events};
use crate::table::limit;
use crate::{MemoryStore, Tables};

const MODEL: &str = "scoring_model";
const SCORE: &str = "contact_score";

/// The scoring tables.
#[derive(Default)]
pub(crate) struct ScoringTables {
    /// Every model version per workspace, by version.
    models: HashMap<WorkspaceId, BTreeMap<i64, ScoringModel>>,
    /// Current scores per workspace, by contact.
    scores: HashMap<WorkspaceId, BTreeMap<ContactId, ContactScore>>,
}

impl ScoringTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            (
                "scoring_models",
                self.models.values().map(BTreeMap::len).sum(),
            ),
            (
                "contact_scores",
                self.scores.values().map(BTreeMap::len).sum(),
            ),
        ]);
    }
}

fn save_model(t: &mut Tables, model: &ScoringModel) -> Result<ScoringModel, StoreError> {
    model.validate()?;
    let versions = t.scoring.models.entry(model.workspace_id).or_default();
    let current = versions.keys().next_back().copied().unwrap_or(0);
    if model.version != current + 1 {
        return Err(StoreError::VersionConflict {
            entity: MODEL,
            id: model.workspace_id.to_string(),
            expected: model.version - 1,
            actual: current,
        });
    }
    versions.insert(model.version, model.clone());
    Ok(model.clone())
}

/// Checks a batch of scores and answers what writing it would do, writing nothing.
fn plan_scores(
    t: &Tables,
    ws: WorkspaceId,
    scores: &[ContactScore],
) -> Result<Vec<ScoreWritten>, StoreError> {
    validate_batch(ws, scores)?;
    for s in scores {
        t.crm.contacts.ensure_ref(ws, Some(s.contact_id))?;
    }
    let table = t.scoring.scores.get(&ws);
    Ok(scores
        .iter()
        .map(|s| {
            let old = table.and_then(|m| m.get(&s.contact_id));
            ScoreWritten {
                contact_id: s.contact_id,
                previous: old.map(ContactScore::effective_tier),
                // An existing override stays in force; otherwise the new tier is (an
                // unchanged row has the same tier anyway).
                current: old
                    .and_then(|o| o.manual_override.as_ref())
                    .map_or(s.tier, |o| o.tier),
            }
        })
        .collect())
}

/// The `score.changed` events writing a checked batch (see [`plan_scores`]) would
/// append, from the rows it would store, writing nothing.
fn score_events(
    t: &Tables,
    ws: WorkspaceId,
    scores: &[ContactScore],
) -> Result<Vec<NewEvent>, StoreError> {
    let table = t.scoring.scores.get(&ws);
    let mut out = Vec::new();
    for s in scores {
        let old = table.and_then(|m| m.get(&s.contact_id));
        if old.is_some_and(|o| same_computed(o, s)) {
            continue;
        }
        let next = ContactScore {
            manual_override: old.and_then(|o| o.manual_override.clone()),
            ..s.clone()
        };
        out.extend(events::score_changed(old, &next)?);
    }
    Ok(out)
}

/// Writes a checked batch (see [`plan_scores`]) with its `score.changed` events
/// (built by [`score_events`] before the write).
fn write_scores(t: &mut Tables, ws: WorkspaceId, scores: &[ContactScore], changed: &[NewEvent]) {
    let table = t.scoring.scores.entry(ws).or_default();
    for s in scores {
        match table.get_mut(&s.contact_id) {
            // Same computed fields: the stored row (and its computed_at) stays.
            Some(old) if same_computed(old, s) => {}
            Some(old) => {
                let manual_override = old.manual_override.take();
                *old = ContactScore {
                    manual_override,
                    ..s.clone()
                };
            }
            None => {
                table.insert(
                    s.contact_id,
                    ContactScore {
                        manual_override: None,
                        ..s.clone()
                    },
                );
            }
        }
    }
    append_changes(t, changed);
}

fn upsert_scores(
    t: &mut Tables,
    ws: WorkspaceId,
    scores: &[ContactScore],
) -> Result<Vec<ScoreWritten>, StoreError> {
    let written = plan_scores(t, ws, scores)?;
    let changed = score_events(t, ws, scores)?;
    write_scores(t, ws, scores, &changed);
    Ok(written)
}

/// Scores and their events, all checked before either is written.
fn upsert_scores_with_events(
    t: &mut Tables,
    ws: WorkspaceId,
    scores: &[ContactScore],
    events_for: &ScoreEvents<'_>,
) -> Result<Vec<ScoreWritten>, StoreError> {
    let written = plan_scores(t, ws, scores)?;
    let events = events_for(&written)?;
    check_events(t, &events)?;
    let changed = score_events(t, ws, scores)?;
    write_scores(t, ws, scores, &changed);
    append_events(t, &events)?;
    Ok(written)
}

/// Whether a write would change nothing but `computed_at` (see
/// `ScoringStore::upsert_contact_scores`).
fn same_computed(old: &ContactScore, new: &ContactScore) -> bool {
    old.total == new.total
        && old.tier == new.tier
        && old.model_version == new.model_version
        && old.breakdown == new.breakdown
}

/// The rules every batch keeps, checked before anything is written.
fn validate_batch(ws: WorkspaceId, scores: &[ContactScore]) -> Result<(), StoreError> {
    validate_limit(u32::try_from(scores.len()).unwrap_or(u32::MAX))?;
    let mut seen = HashSet::with_capacity(scores.len());
    for s in scores {
        s.validate()?;
        if s.workspace_id != ws {
            return Err(ValidationError::new(
                "score.workspace_id",
                "must be the batch's workspace",
            )
            .into());
        }
        if !seen.insert(s.contact_id) {
            return Err(
                ValidationError::new("score.contact_id", "appears twice in the batch").into(),
            );
        }
    }
    Ok(())
}

fn set_override(
    t: &mut Tables,
    ws: WorkspaceId,
    contact_id: ContactId,
    manual: Option<&ScoreOverride>,
) -> Result<ScoreWritten, StoreError> {
    if let Some(m) = manual {
        m.validate()?;
    }
    let row = t
        .scoring
        .scores
        .get_mut(&ws)
        .and_then(|m| m.get_mut(&contact_id))
        .ok_or_else(|| StoreError::not_found(SCORE, contact_id))?;
    let mut next = row.clone();
    next.manual_override = manual.cloned();
    let event = events::score_changed(Some(row), &next)?;
    let previous = row.effective_tier();
    *row = next;
    let current = row.effective_tier();
    append_changes(t, event.as_slice());
    Ok(ScoreWritten {
        contact_id,
        previous: Some(previous),
        current,
    })
}

/// The inputs of `contacts` (ascending by id), from their accounts and the activities
/// that occurred at or after `since`: one pass over the workspace's activities.
fn inputs<'a>(
    t: &Tables,
    ws: WorkspaceId,
    contacts: impl Iterator<Item = &'a Contact>,
    since: DateTime<Utc>,
) -> Vec<ScoringInput> {
    let mut by_contact: BTreeMap<ContactId, ScoringInput> = contacts
        .map(|c| {
            let account = c.account_id.and_then(|a| t.crm.accounts.get(ws, a));
            (c.id, ScoringInput::from_records(c, account, &[]))
        })
        .collect();
    for activity in t.crm.activities.rows(ws) {
        if activity.occurred_at < since {
            continue;
        }
        if let Some(input) = activity.contact_id.and_then(|c| by_contact.get_mut(&c)) {
            input.add(activity);
        }
    }
    by_contact
        .into_values()
        .map(|mut input| {
            input.normalize();
            input
        })
        .collect()
}

#[async_trait]
impl ScoringStore for MemoryStore {
    async fn save_scoring_model(&self, model: &ScoringModel) -> Result<ScoringModel, StoreError> {
        self.with(|t| save_model(t, model))
    }

    async fn current_scoring_model(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<ScoringModel>, StoreError> {
        Ok(self.with(|t| {
            t.scoring
                .models
                .get(&workspace_id)
                .and_then(|v| v.values().next_back().cloned())
        }))
    }

    async fn get_scoring_model(
        &self,
        workspace_id: WorkspaceId,
        version: i64,
    ) -> Result<ScoringModel, StoreError> {
        self.with(|t| {
            t.scoring
                .models
                .get(&workspace_id)
                .and_then(|v| v.get(&version).cloned())
                .ok_or_else(|| StoreError::not_found(MODEL, version))
        })
    }

    async fn upsert_contact_scores(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
    ) -> Result<Vec<ScoreWritten>, StoreError> {
        self.with(|t| upsert_scores(t, workspace_id, scores))
    }

    async fn upsert_contact_scores_with_events(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
        events_for: &ScoreEvents<'_>,
    ) -> Result<Vec<ScoreWritten>, StoreError> {
        self.with(|t| upsert_scores_with_events(t, workspace_id, scores, events_for))
    }

    async fn get_contact_score(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Option<ContactScore>, StoreError> {
        Ok(self.with(|t| {
            t.scoring
                .scores
                .get(&workspace_id)
                .and_then(|m| m.get(&contact_id).cloned())
        }))
    }

    async fn set_score_override(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        manual_override: Option<&ScoreOverride>,
    ) -> Result<ScoreWritten, StoreError> {
        self.with(|t| set_override(t, workspace_id, contact_id, manual_override))
    }

    async fn list_scores_by_tier(
        &self,
        workspace_id: WorkspaceId,
        tier: Tier,
        page: Page<ContactId>,
    ) -> Result<Vec<ContactScore>, StoreError> {
        page.validate()?;
        let lower = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self.with(|t| {
            t.scoring
                .scores
                .get(&workspace_id)
                .into_iter()
                .flat_map(|m| m.range((lower, Bound::Unbounded)).map(|(_, s)| s))
                .filter(|s| s.effective_tier() == tier)
                .take(limit(page.limit))
                .cloned()
                .collect()
        }))
    }

    async fn list_scoring_inputs(
        &self,
        workspace_id: WorkspaceId,
        since: DateTime<Utc>,
        page: Page<ContactId>,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        self.with(|t| {
            let contacts = t.crm.contacts.page(workspace_id, &page, |_| true)?;
            Ok(inputs(t, workspace_id, contacts.into_iter(), since))
        })
    }

    async fn scoring_inputs_for(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        since: DateTime<Utc>,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        validate_limit(u32::try_from(contact_ids.len()).unwrap_or(u32::MAX).max(1))?;
        self.with(|t| {
            let contacts = contact_ids
                .iter()
                .filter_map(|id| t.crm.contacts.get(workspace_id, *id));
            Ok(inputs(t, workspace_id, contacts, since))
        })
    }
}
