//! Scoring models, contact scores (batched upserts with `UNNEST`) and paged scoring
//! inputs.

mod inputs;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::NewEvent;
use crm_core::model::scoring::{
    ContactScore, ScoreOverride, ScoreWritten, ScoringInput, ScoringModel, Tier,
};
use crm_core::store::{Page, ScoreEvents, ScoringStore, validate_limit};
use crm_core::{StoreError, ValidationError, events};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Ref, backend, corrupt, db, db_refs, parse_text};
use crate::queue::insert_events_in;

const MODEL: &str = "scoring_model";
const SCORE: &str = "contact_score";

/// `contact_scores`.
#[derive(Debug, sqlx::FromRow)]
struct ScoreRow {
    workspace_id: Uuid,
    contact_id: Uuid,
    total: i16,
    tier: String,
    breakdown: Value,
    model_version: i64,
    computed_at: DateTime<Utc>,
    manual_override: Option<Value>,
}

impl ScoreRow {
    fn into_score(self) -> Result<ContactScore, StoreError> {
        Ok(ContactScore {
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            contact_id: ContactId::from_uuid(self.contact_id),
            total: u8::try_from(self.total).map_err(|e| corrupt("contact_scores.total", e))?,
            tier: parse_text(&self.tier)?,
            breakdown: serde_json::from_value(self.breakdown)
                .map_err(|e| corrupt("contact_scores.breakdown", e))?,
            model_version: self.model_version,
            computed_at: self.computed_at,
            manual_override: parse_override(self.manual_override)?,
        })
    }
}

/// The answer of an override: the row written and the override it replaced.
#[derive(Debug, sqlx::FromRow)]
struct OverriddenRow {
    #[sqlx(flatten)]
    score: ScoreRow,
    old_override: Option<Value>,
}

/// A row of an upsert's answer: a score the statement kept (`written` false: its
/// computed fields would not change) or wrote (`written` true, with what the write
/// replaced: the old computed total and tier and the override, all NULL for a row it
/// inserted). `previous_tier` is the effective tier before the statement.
#[derive(Debug, sqlx::FromRow)]
struct TierRow {
    contact_id: Uuid,
    effective_tier: String,
    written: bool,
    previous_tier: Option<String>,
    old_total: Option<i16>,
    old_tier: Option<String>,
    old_override: Option<Value>,
}

/// What a written score's `score.changed` compares against: the row it replaced.
struct OldScore {
    total: u8,
    tier: Tier,
    manual_override: Option<ScoreOverride>,
}

impl OldScore {
    fn from_row(row: &TierRow) -> Result<Option<Self>, StoreError> {
        let (Some(total), Some(tier)) = (row.old_total, row.old_tier.as_deref()) else {
            return Ok(None);
        };
        Ok(Some(Self {
            total: u8::try_from(total).map_err(|e| corrupt("contact_scores.total", e))?,
            tier: parse_text(tier)?,
            manual_override: parse_override(row.old_override.clone())?,
        }))
    }
}

fn parse_override(value: Option<Value>) -> Result<Option<ScoreOverride>, StoreError> {
    value
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| corrupt("contact_scores.manual_override", e))
}

/// The `score.changed` event (`crm_core::events::score_changed`) of a written score:
/// the written row (the batch's score with the old row's override) against the row it
/// replaced, if any.
fn score_event(
    score: &ContactScore,
    old: Option<&OldScore>,
) -> Result<Option<NewEvent>, StoreError> {
    let after = ContactScore {
        manual_override: old.and_then(|o| o.manual_override.clone()),
        ..score.clone()
    };
    // The builder reads only the effective total and tier of the old row.
    let before = old.map(|o| ContactScore {
        total: o.total,
        tier: o.tier,
        manual_override: o.manual_override.clone(),
        ..score.clone()
    });
    Ok(events::score_changed(before.as_ref(), &after)?)
}

/// Each score's tiers before and after, in input order, and the `score.changed`
/// events of the written ones, from the upsert's answer; `None` for a score the
/// statement neither kept nor wrote (a racing writer had just written the same
/// values: see [`UPSERT_SCORES`]).
fn outcomes(
    scores: &[ContactScore],
    rows: Vec<TierRow>,
) -> Result<(Vec<Option<ScoreWritten>>, Vec<NewEvent>), StoreError> {
    let position: HashMap<Uuid, usize> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (s.contact_id.as_uuid(), i))
        .collect();
    let mut written: Vec<Option<ScoreWritten>> = vec![None; scores.len()];
    let mut changed = Vec::new();
    for row in rows {
        let at = *position
            .get(&row.contact_id)
            .ok_or_else(|| corrupt("contact_scores.contact_id", "not in the batch"))?;
        let current = parse_text(&row.effective_tier)?;
        let previous = row.previous_tier.as_deref().map(parse_text).transpose()?;
        if row.written {
            let old = OldScore::from_row(&row)?;
            changed.extend(score_event(&scores[at], old.as_ref())?);
        }
        written[at] = Some(ScoreWritten {
            contact_id: scores[at].contact_id,
            previous,
            current,
        });
    }
    Ok((written, changed))
}

fn model_from(definition: Value) -> Result<ScoringModel, StoreError> {
    serde_json::from_value(definition).map_err(|e| corrupt("scoring_models.definition", e))
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

// One statement for the whole batch, the rows as parallel arrays (UNNEST). A row whose
// computed fields would not change, by the statement's snapshot, is not written at all
// (no row lock, new row version, index entry or WAL: most rows of a nightly run), and
// its tier is the old one. The others are inserted, or update the stored row, which
// copies the values it replaces into `replaced_total`/`replaced_tier` (migration 0019)
// so RETURNING reports them: the update locks and reads the latest committed row, so
// two writers racing on one contact each report exactly the tier they replaced, and
// one tier change is reported once. Rows are written in contact order, so writers of
// overlapping batches never deadlock. The update is skipped when the latest row holds
// the same values (a racing writer wrote them): that row is neither kept nor written,
// and its tier is read after the statement (`TIERS`). An existing manual override is
// kept because the update never touches it.
const UPSERT_SCORES: &str = "
WITH input AS (
    SELECT * FROM UNNEST($2::uuid[], $3::smallint[], $4::text[], $5::jsonb[], $6::bigint[],
                         $7::timestamptz[])
        AS t(contact_id, total, tier, breakdown, model_version, computed_at)
), kept AS (
    SELECT i.contact_id, s.effective_tier
    FROM input i CROSS JOIN LATERAL (
        SELECT effective_tier, total, tier, model_version, breakdown
        FROM contact_scores
        WHERE workspace_id = $1 AND contact_id = i.contact_id LIMIT 1) s
    WHERE (s.total, s.tier, s.model_version, s.breakdown)
        = (i.total, i.tier, i.model_version, i.breakdown)
), up AS (
    INSERT INTO contact_scores AS s (workspace_id, contact_id, total, tier, breakdown,
        model_version, computed_at)
    SELECT $1, i.contact_id, i.total, i.tier, i.breakdown, i.model_version, i.computed_at
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM kept WHERE kept.contact_id = i.contact_id)
    ORDER BY i.contact_id
    ON CONFLICT (workspace_id, contact_id) DO UPDATE SET
        total = EXCLUDED.total,
        tier = EXCLUDED.tier,
        breakdown = EXCLUDED.breakdown,
        model_version = EXCLUDED.model_version,
        computed_at = EXCLUDED.computed_at,
        replaced_total = s.total,
        replaced_tier = s.tier
    WHERE (s.total, s.tier, s.model_version, s.breakdown) IS DISTINCT FROM
        (EXCLUDED.total, EXCLUDED.tier, EXCLUDED.model_version, EXCLUDED.breakdown)
    RETURNING s.contact_id, s.effective_tier, s.replaced_total, s.replaced_tier,
        s.manual_override
)
SELECT contact_id, effective_tier, false AS written, effective_tier AS previous_tier,
    NULL::smallint AS old_total, NULL::text AS old_tier, NULL::jsonb AS old_override
FROM kept
UNION ALL
SELECT contact_id, effective_tier, true,
    CASE WHEN replaced_tier IS NOT NULL
        THEN coalesce(manual_override ->> 'tier', replaced_tier) END,
    replaced_total, replaced_tier, CASE WHEN replaced_tier IS NOT NULL THEN manual_override END
FROM up";

/// The effective tiers of the contacts `$2`: for the rows [`UPSERT_SCORES`] found
/// written by a racing writer with the same values.
const TIERS: &str = "
    SELECT contact_id, effective_tier FROM contact_scores
    WHERE workspace_id = $1 AND contact_id = ANY($2)";

/// Runs [`UPSERT_SCORES`] for a validated batch on `conn`; answers each score's tiers
/// and the `score.changed` events to append with the write.
async fn upsert_scores(
    conn: &mut PgConnection,
    workspace_id: WorkspaceId,
    scores: &[ContactScore],
) -> Result<(Vec<ScoreWritten>, Vec<NewEvent>), StoreError> {
    let n = scores.len();
    let mut ids = Vec::with_capacity(n);
    let mut totals = Vec::with_capacity(n);
    let mut tiers = Vec::with_capacity(n);
    let mut breakdowns = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for s in scores {
        ids.push(s.contact_id.as_uuid());
        totals.push(i16::from(s.total));
        tiers.push(s.tier.as_str());
        breakdowns.push(Json(&s.breakdown));
        versions.push(s.model_version);
        times.push(s.computed_at);
    }
    let refs = [Ref::new("contact_scores_contact_fk", "contact", None)];
    let rows = sqlx::query_as::<_, TierRow>(UPSERT_SCORES)
        .bind(workspace_id.as_uuid())
        .bind(ids)
        .bind(totals)
        .bind(tiers)
        .bind(breakdowns)
        .bind(versions)
        .bind(times)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_refs(SCORE, &refs))?;
    let (mut written, changed) = outcomes(scores, rows)?;
    let raced: Vec<Uuid> = scores
        .iter()
        .zip(&written)
        .filter(|(_, w)| w.is_none())
        .map(|(s, _)| s.contact_id.as_uuid())
        .collect();
    if !raced.is_empty() {
        let tiers: Vec<(Uuid, String)> = sqlx::query_as(TIERS)
            .bind(workspace_id.as_uuid())
            .bind(raced)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(SCORE))?;
        let tiers: HashMap<Uuid, String> = tiers.into_iter().collect();
        for (s, w) in scores.iter().zip(written.iter_mut()) {
            if let (None, Some(tier)) = (&w, tiers.get(&s.contact_id.as_uuid())) {
                let tier = parse_text(tier)?;
                *w = Some(ScoreWritten {
                    contact_id: s.contact_id,
                    previous: Some(tier),
                    current: tier,
                });
            }
        }
    }
    let written = written
        .into_iter()
        .map(|w| w.ok_or_else(|| corrupt("contact_scores", "a score was neither kept nor written")))
        .collect::<Result<_, _>>()?;
    Ok((written, changed))
}

#[async_trait]
impl ScoringStore for PostgresStore {
    async fn save_scoring_model(&self, model: &ScoringModel) -> Result<ScoringModel, StoreError> {
        model.validate()?;
        let definition = serde_json::to_value(model).map_err(backend)?;
        // Compare-and-set in one statement: the insert happens only when the version is
        // the current one + 1; a concurrent save of the same version loses on the key.
        let saved = sqlx::query_scalar::<_, i64>(
            "INSERT INTO scoring_models (workspace_id, version, definition, created_at)
             SELECT $1, $2, $3, $4
             WHERE $2 = coalesce((SELECT max(version) FROM scoring_models
                                  WHERE workspace_id = $1), 0) + 1
             ON CONFLICT (workspace_id, version) DO NOTHING
             RETURNING version",
        )
        .bind(model.workspace_id.as_uuid())
        .bind(model.version)
        .bind(definition)
        .bind(model.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?;
        if saved.is_some() {
            return Ok(model.clone());
        }
        let actual = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT max(version) FROM scoring_models WHERE workspace_id = $1",
        )
        .bind(model.workspace_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(db(MODEL))?
        .unwrap_or(0);
        Err(StoreError::VersionConflict {
            entity: MODEL,
            id: model.workspace_id.to_string(),
            expected: model.version - 1,
            actual,
        })
    }

    async fn current_scoring_model(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<ScoringModel>, StoreError> {
        sqlx::query_scalar::<_, Value>(
            "SELECT definition FROM scoring_models WHERE workspace_id = $1
             ORDER BY version DESC LIMIT 1",
        )
        .bind(workspace_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?
        .map(model_from)
        .transpose()
    }

    async fn get_scoring_model(
        &self,
        workspace_id: WorkspaceId,
        version: i64,
    ) -> Result<ScoringModel, StoreError> {
        sqlx::query_scalar::<_, Value>(
            "SELECT definition FROM scoring_models WHERE workspace_id = $1 AND version = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?
        .map(model_from)
        .transpose()?
        .ok_or_else(|| StoreError::not_found(MODEL, version))
    }

    async fn upsert_contact_scores(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
    ) -> Result<Vec<ScoreWritten>, StoreError> {
        validate_batch(workspace_id, scores)?;
        let mut tx = self.pool.begin().await.map_err(db(SCORE))?;
        let (written, changed) = upsert_scores(&mut tx, workspace_id, scores).await?;
        insert_events_in(&mut tx, &changed).await?;
        tx.commit().await.map_err(db(SCORE))?;
        Ok(written)
    }

    async fn upsert_contact_scores_with_events(
        &self,
        workspace_id: WorkspaceId,
        scores: &[ContactScore],
        events_for: &ScoreEvents<'_>,
    ) -> Result<Vec<ScoreWritten>, StoreError> {
        validate_batch(workspace_id, scores)?;
        let mut tx = self.pool.begin().await.map_err(db(SCORE))?;
        // Each write reports the tier it replaced exactly (see UPSERT_SCORES), so two
        // writers of one contact never both report, and emit, one tier change.
        let (written, mut appended) = upsert_scores(&mut tx, workspace_id, scores).await?;
        // The score changes first, then the caller's events of the same write.
        appended.extend(events_for(&written)?);
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(SCORE))?;
        Ok(written)
    }

    async fn get_contact_score(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Option<ContactScore>, StoreError> {
        sqlx::query_as::<_, ScoreRow>(
            "SELECT workspace_id, contact_id, total, tier, breakdown, model_version,
                    computed_at, manual_override
             FROM contact_scores WHERE workspace_id = $1 AND contact_id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(contact_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(SCORE))?
        .map(ScoreRow::into_score)
        .transpose()
    }

    async fn set_score_override(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        manual_override: Option<&ScoreOverride>,
    ) -> Result<ScoreWritten, StoreError> {
        if let Some(m) = manual_override {
            m.validate()?;
        }
        let value = manual_override
            .map(serde_json::to_value)
            .transpose()
            .map_err(backend)?;
        // The old override comes from the statement's snapshot; the rest of the row
        // is the one written.
        let mut tx = self.pool.begin().await.map_err(db(SCORE))?;
        let row = sqlx::query_as::<_, OverriddenRow>(
            "WITH old AS (
                 SELECT contact_id, manual_override FROM contact_scores
                 WHERE workspace_id = $1 AND contact_id = $2
             ), up AS (
                 UPDATE contact_scores s SET manual_override = $3
                 FROM old WHERE s.workspace_id = $1 AND s.contact_id = old.contact_id
                 RETURNING s.workspace_id, s.contact_id, s.total, s.tier, s.breakdown,
                     s.model_version, s.computed_at, s.manual_override
             )
             SELECT up.*, old.manual_override AS old_override
             FROM up JOIN old ON old.contact_id = up.contact_id",
        )
        .bind(workspace_id.as_uuid())
        .bind(contact_id.as_uuid())
        .bind(value)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(SCORE))?
        .ok_or_else(|| StoreError::not_found(SCORE, contact_id))?;
        let after = row.score.into_score()?;
        let before = ContactScore {
            manual_override: parse_override(row.old_override)?,
            ..after.clone()
        };
        let changed = events::score_changed(Some(&before), &after)?;
        insert_events_in(&mut tx, changed.as_slice()).await?;
        tx.commit().await.map_err(db(SCORE))?;
        Ok(ScoreWritten {
            contact_id,
            previous: Some(before.effective_tier()),
            current: after.effective_tier(),
        })
    }

    async fn list_scores_by_tier(
        &self,
        workspace_id: WorkspaceId,
        tier: Tier,
        page: Page<ContactId>,
    ) -> Result<Vec<ContactScore>, StoreError> {
        page.validate()?;
        sqlx::query_as::<_, ScoreRow>(
            "SELECT workspace_id, contact_id, total, tier, breakdown, model_version,
                    computed_at, manual_override
             FROM contact_scores
             WHERE workspace_id = $1 AND effective_tier = $2
               AND ($3::uuid IS NULL OR contact_id > $3)
             ORDER BY contact_id LIMIT $4",
        )
        .bind(workspace_id.as_uuid())
        .bind(tier.as_str())
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(SCORE))?
        .into_iter()
        .map(ScoreRow::into_score)
        .collect()
    }

    async fn list_scoring_inputs(
        &self,
        workspace_id: WorkspaceId,
        since: DateTime<Utc>,
        page: Page<ContactId>,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        page.validate()?;
        inputs::load(
            &self.pool,
            workspace_id,
            since,
            page.after,
            None,
            page.limit,
        )
        .await
    }

    async fn scoring_inputs_for(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        since: DateTime<Utc>,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        let n = u32::try_from(contact_ids.len()).unwrap_or(u32::MAX);
        validate_limit(n.max(1))?;
        if contact_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = contact_ids.iter().map(|c| c.as_uuid()).collect();
        inputs::load(&self.pool, workspace_id, since, None, Some(ids), n).await
    }
}
