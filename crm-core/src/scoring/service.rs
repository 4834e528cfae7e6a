//! The scoring service: load inputs, score, write scores with the model version,
//! append tier events, handle manual overrides and bulk rescoring.
//!
//! # Ordering and failure
//! A batch's scores and its tier events are written in one atomic step
//! ([`ScoringStore::upsert_contact_scores_with_events`]), so a crash never leaves a tier
//! change without its event. Events carry idempotency keys built from the contact and
//! the trigger (`"contact.scored:{contact}:{trigger}"`), so a retried trigger never
//! doubles an event. A manual override is written, then audited, then its events are
//! appended: a crash in between loses the audit entry or the event, and the retry
//! (which sees no tier change) does not bring the event back.
//!
//! [`ScoringStore::upsert_contact_scores_with_events`]: crate::store::ScoringStore::upsert_contact_scores_with_events

use std::pin::pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::future::{self, Either};
use futures::stream::{FuturesOrdered, StreamExt as _};
use serde_json::json;

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind, ValidationError};
use crate::ids::{ContactId, WorkspaceId};
use crate::model::{Actor, AuditEntry, Job, NewEvent};
use crate::scoring::inputs::ScoringInput;
use crate::scoring::model::ScoringModel;
use crate::scoring::record::{ContactScore, ScoreOverride, ScoreWritten};
use crate::scoring::score::{INTENT_HORIZON_HALF_LIVES, explain};
use crate::scoring::tier::{CONTACT_SCORED, LEAD_QUALIFIED, TierChange};
use crate::store::{Page, ScorerStore};

/// Event kind appended when a workspace's scoring model changes.
pub const MODEL_CHANGED: &str = "scoring.model_changed";
/// Job kind: rescore every contact of the job's workspace (bulk recalculation after a
/// model change, and the nightly decay run).
pub const RESCORE_ALL: &str = "scoring.rescore_all";
/// Job kind: rescore the contact named in the payload's `contact_id`.
pub const RESCORE_CONTACT: &str = "scoring.rescore_contact";
/// Audit action of a manual override.
pub const OVERRIDE_ACTION: &str = "score.override";
/// Audit action of clearing a manual override.
pub const CLEAR_OVERRIDE_ACTION: &str = "score.override_cleared";

/// How many contacts a bulk rescore reads and writes per batch.
const BATCH: u32 = 1000;

/// How many pages of a bulk rescore are written at once: enough to keep the store
/// busy while one page's transaction waits on a round trip or a commit, few enough
/// to leave the pool's other connections to the rest of the engine.
pub const PAGES_IN_FLIGHT: usize = 2;

/// Why a scoring operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScoringError {
    /// The workspace has no scoring model yet (permanent until one is saved).
    #[error("workspace {workspace_id} has no scoring model")]
    NoModel {
        /// The workspace.
        workspace_id: WorkspaceId,
    },
    /// The input was rejected (permanent).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A store call failed; see [`ScoringError::is_retryable`].
    #[error("scoring could not {operation}")]
    Store {
        /// What the scorer was doing.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl ScoringError {
    /// Whether trying again may succeed: an unavailable store or a lost race on a
    /// versioned row. Everything else is permanent.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => {
                source.is_retryable() || source.kind() == StoreErrorKind::VersionConflict
            }
            Self::NoModel { .. } | Self::Invalid(_) => false,
        }
    }
}

fn store(operation: &'static str) -> impl Fn(StoreError) -> ScoringError {
    move |source| ScoringError::Store { operation, source }
}

/// What a rescoring run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescoreReport {
    /// Contacts scored.
    pub scored: u64,
    /// Contacts whose effective tier changed (`contact.scored` events).
    pub tier_changes: u64,
    /// Contacts that reached `Hot` or above (`lead.qualified` events).
    pub qualified: u64,
}

impl RescoreReport {
    fn add(&mut self, other: Self) {
        self.scored += other.scored;
        self.tier_changes += other.tier_changes;
        self.qualified += other.qualified;
    }
}

/// The scoring service over a store and a clock.
#[derive(Debug, Clone)]
pub struct Scorer {
    store: Arc<dyn ScorerStore>,
    clock: Arc<dyn Clock>,
}

impl Scorer {
    /// A scorer over `store`, reading time from `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn ScorerStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Saves a new model version (compare-and-set, see
    /// [`ScoringStore::save_scoring_model`](crate::store::ScoringStore::save_scoring_model))
    /// and triggers the bulk recalculation: appends `scoring.model_changed` with a
    /// [`RESCORE_ALL`] job, both keyed by the version so a retry enqueues it once. If
    /// the append fails after the save, call [`request_rescore`](Self::request_rescore)
    /// with the saved version.
    pub async fn save_model(&self, model: &ScoringModel) -> Result<ScoringModel, ScoringError> {
        let saved = self
            .store
            .save_scoring_model(model)
            .await
            .map_err(store("save the scoring model"))?;
        self.request_rescore(saved.workspace_id, saved.version)
            .await?;
        Ok(saved)
    }

    /// Appends `scoring.model_changed` for `version` with its [`RESCORE_ALL`] job;
    /// idempotent per (workspace, version).
    pub async fn request_rescore(
        &self,
        workspace_id: WorkspaceId,
        version: i64,
    ) -> Result<(), ScoringError> {
        let now = self.clock.now();
        let event = NewEvent::new(
            workspace_id,
            MODEL_CHANGED,
            format!("scoring_model:{version}"),
            json!({ "model_version": version }),
            format!("{MODEL_CHANGED}:{version}"),
            now,
        )?;
        let job = Job::new(
            workspace_id,
            RESCORE_ALL,
            json!({ "reason": "model_changed", "model_version": version }),
            now,
        )?
        .with_idempotency_key(format!("{RESCORE_ALL}:model:{version}"));
        self.store
            .append_event_with_jobs(&event, &[job])
            .await
            .map_err(store("request a bulk rescore"))?;
        Ok(())
    }

    async fn model(&self, workspace_id: WorkspaceId) -> Result<ScoringModel, ScoringError> {
        self.store
            .current_scoring_model(workspace_id)
            .await
            .map_err(store("load the scoring model"))?
            .ok_or(ScoringError::NoModel { workspace_id })
    }

    /// Activity before this instant scores nothing under `model` at `now`: older than
    /// every behavioral decay and, for a model with intent factors, older than
    /// [`INTENT_HORIZON_HALF_LIVES`] intent half-lives (worth less than a centipoint).
    #[must_use]
    pub fn activity_since(model: &ScoringModel, now: DateTime<Utc>) -> DateTime<Utc> {
        let behavioral = i64::from(model.max_decay_days());
        let days = if model.intent.is_empty() {
            behavioral
        } else {
            let half_life = i64::from(model.intent_half_life_days.max(1));
            behavioral.max(half_life * INTENT_HORIZON_HALF_LIVES)
        };
        now.checked_sub_signed(Duration::days(days))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// Rescores the given contacts (at most 1000) with the current model; contacts
    /// missing from the workspace are skipped. `trigger` names what caused the run
    /// (an event or job id) and goes into the events' idempotency keys. A workspace
    /// without a model scores nothing and returns an empty report.
    pub async fn rescore_contacts(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        trigger: &str,
    ) -> Result<RescoreReport, ScoringError> {
        let model = match self.model(workspace_id).await {
            Ok(model) => model,
            Err(ScoringError::NoModel { .. }) => return Ok(RescoreReport::default()),
            Err(err) => return Err(err),
        };
        let now = self.clock.now();
        let inputs = self
            .store
            .scoring_inputs_for(workspace_id, contact_ids, Self::activity_since(&model, now))
            .await
            .map_err(store("load scoring inputs"))?;
        self.score_batch(&model, &inputs, now, trigger).await
    }

    /// Rescores every contact of the workspace with the current model, in pages of
    /// 1000 (one batched write per page). Used after a model change and by the
    /// nightly decay run. A workspace without a model scores nothing (so a scheduled
    /// decay run before the first model is not a failure).
    ///
    /// Pages are read in contact order, one after another, and up to
    /// [`PAGES_IN_FLIGHT`] of them are written at once, each in its own atomic step,
    /// while the next is read: keyset pages never overlap, so no two writes touch the
    /// same contact, and appends take no lock, so the writes do not wait on each other.
    /// On an error the run stops; the pages written before it stay written (a rerun
    /// skips their unchanged scores).
    pub async fn rescore_all(
        &self,
        workspace_id: WorkspaceId,
        trigger: &str,
    ) -> Result<RescoreReport, ScoringError> {
        let model = match self.model(workspace_id).await {
            Ok(model) => model,
            Err(ScoringError::NoModel { .. }) => return Ok(RescoreReport::default()),
            Err(err) => return Err(err),
        };
        let now = self.clock.now();
        let since = Self::activity_since(&model, now);
        let mut writes = FuturesOrdered::new();
        let mut report = RescoreReport::default();
        let mut next = Some(Page::first(BATCH));
        while let Some(page) = next.take() {
            // The next page is read while the writes in flight go on.
            let mut read = pin!(self.store.list_scoring_inputs(workspace_id, since, page));
            let inputs = loop {
                if writes.is_empty() {
                    break read.await;
                }
                match future::select(read.as_mut(), writes.next()).await {
                    Either::Left((inputs, _)) => break inputs,
                    Either::Right((Some(batch), _)) => report.add(batch?),
                    Either::Right((None, _)) => {}
                }
            }
            .map_err(store("page scoring inputs"))?;
            let Some(last) = inputs.last().map(|i| i.contact_id) else {
                break;
            };
            next = (inputs.len() == BATCH as usize).then(|| Page::after(last, BATCH));
            writes.push_back(self.score_page(&model, inputs, now, trigger));
            while writes.len() >= PAGES_IN_FLIGHT {
                if let Some(batch) = writes.next().await {
                    report.add(batch?);
                }
            }
        }
        while let Some(batch) = writes.next().await {
            report.add(batch?);
        }
        Ok(report)
    }

    /// [`score_batch`](Self::score_batch) of a page it owns, for the writes in flight.
    async fn score_page(
        &self,
        model: &ScoringModel,
        inputs: Vec<ScoringInput>,
        now: DateTime<Utc>,
        trigger: &str,
    ) -> Result<RescoreReport, ScoringError> {
        self.score_batch(model, &inputs, now, trigger).await
    }

    async fn score_batch(
        &self,
        model: &ScoringModel,
        inputs: &[ScoringInput],
        now: DateTime<Utc>,
        trigger: &str,
    ) -> Result<RescoreReport, ScoringError> {
        if inputs.is_empty() {
            return Ok(RescoreReport::default());
        }
        let scores: Vec<ContactScore> = inputs
            .iter()
            .map(|input| {
                ContactScore::computed(
                    model.workspace_id,
                    input.contact_id,
                    explain(model, input, now),
                    model.version,
                    now,
                )
            })
            .collect();
        // The page's tier events are derived from the writes' outcome and written in
        // the same atomic step as the scores.
        let events_for = |written: &[ScoreWritten]| {
            let mut events = Vec::new();
            for (w, score) in written.iter().zip(&scores) {
                if let Some((tier_events, _)) =
                    self.tier_events(model.workspace_id, w, score.total, model.version, trigger)?
                {
                    events.extend(tier_events);
                }
            }
            Ok(events)
        };
        let written = self
            .store
            .upsert_contact_scores_with_events(model.workspace_id, &scores, &events_for)
            .await
            .map_err(store("write scores and tier events"))?;
        let mut report = RescoreReport {
            scored: written.len() as u64,
            ..RescoreReport::default()
        };
        for change in written
            .iter()
            .filter_map(|w| TierChange::detect(w.previous, w.current))
        {
            report.tier_changes += 1;
            report.qualified += u64::from(change.qualifies());
        }
        Ok(report)
    }

    /// Appends `contact.scored` (and `lead.qualified` when the lead qualifies) for a
    /// tier change. Returns (changed, qualified).
    async fn emit(
        &self,
        workspace_id: WorkspaceId,
        written: &ScoreWritten,
        total: u8,
        model_version: i64,
        trigger: &str,
    ) -> Result<(bool, bool), ScoringError> {
        let Some((events, qualified)) =
            self.tier_events(workspace_id, written, total, model_version, trigger)?
        else {
            return Ok((false, false));
        };
        self.store
            .append_events(&events)
            .await
            .map_err(store("append tier events"))?;
        Ok((true, qualified))
    }

    /// The events of a tier change: `contact.scored`, then `lead.qualified` when the
    /// lead qualifies (the flag says so); `None` when the tier stayed.
    fn tier_events(
        &self,
        workspace_id: WorkspaceId,
        written: &ScoreWritten,
        total: u8,
        model_version: i64,
        trigger: &str,
    ) -> Result<Option<(Vec<NewEvent>, bool)>, ValidationError> {
        let Some(change) = TierChange::detect(written.previous, written.current) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let contact = written.contact_id;
        let payload = json!({
            "contact_id": contact,
            "previous_tier": change.previous,
            "tier": change.current,
            "total": total,
            "model_version": model_version,
        });
        let qualified = change.qualifies();
        let mut events = vec![NewEvent::new(
            workspace_id,
            CONTACT_SCORED,
            contact.to_string(),
            payload.clone(),
            format!("{CONTACT_SCORED}:{contact}:{trigger}"),
            now,
        )?];
        if qualified {
            events.push(NewEvent::new(
                workspace_id,
                LEAD_QUALIFIED,
                contact.to_string(),
                payload,
                format!("{LEAD_QUALIFIED}:{contact}:{trigger}"),
                now,
            )?);
        }
        Ok(Some((events, qualified)))
    }

    /// Sets a manual override of a scored contact's total. The reason is required;
    /// the override is audited (`score.override`, with the reason and the tiers) and a
    /// tier change emits events like a computed one. The tier comes from the current
    /// model's thresholds. `NotFound` (inside [`ScoringError::Store`]) if the contact
    /// was never scored.
    pub async fn override_score(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        total: u8,
        reason: &str,
        actor: Actor,
    ) -> Result<ScoreWritten, ScoringError> {
        let model = self.model(workspace_id).await?;
        let now = self.clock.now();
        let manual = ScoreOverride {
            total,
            tier: model.thresholds.tier(total.min(100)),
            reason: reason.trim().to_owned(),
            actor: actor.clone(),
            at: now,
        };
        manual.validate()?;
        let written = self
            .store
            .set_score_override(workspace_id, contact_id, Some(&manual))
            .await
            .map_err(store("set the score override"))?;
        let entry = AuditEntry::new(
            workspace_id,
            actor,
            OVERRIDE_ACTION,
            contact_id.to_string(),
            json!({
                "total": total,
                "tier": manual.tier,
                "previous_tier": written.previous,
                "reason": manual.reason,
                "model_version": model.version,
            }),
            now,
        )?;
        self.store
            .append_audit(&entry)
            .await
            .map_err(store("audit the score override"))?;
        let trigger = format!("override:{}", entry.id);
        self.emit(workspace_id, &written, total, model.version, &trigger)
            .await?;
        Ok(written)
    }

    /// Clears a manual override so the computed score is in force again. Like setting
    /// one, it needs a reason, is audited (`score.override_cleared`) and emits tier
    /// events when the effective tier changes.
    pub async fn clear_override(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        reason: &str,
        actor: Actor,
    ) -> Result<ScoreWritten, ScoringError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ValidationError::new("score.override.reason", "must not be empty").into());
        }
        let now = self.clock.now();
        let written = self
            .store
            .set_score_override(workspace_id, contact_id, None)
            .await
            .map_err(store("clear the score override"))?;
        let entry = AuditEntry::new(
            workspace_id,
            actor,
            CLEAR_OVERRIDE_ACTION,
            contact_id.to_string(),
            json!({
                "tier": written.current,
                "previous_tier": written.previous,
                "reason": reason,
            }),
            now,
        )?;
        self.store
            .append_audit(&entry)
            .await
            .map_err(store("audit the cleared override"))?;
        if TierChange::detect(written.previous, written.current).is_some() {
            let score = self
                .store
                .get_contact_score(workspace_id, contact_id)
                .await
                .map_err(store("read the score"))?;
            let (total, version) = score.map_or((0, 0), |s| (s.total, s.model_version));
            let trigger = format!("override:{}", entry.id);
            self.emit(workspace_id, &written, total, version, &trigger)
                .await?;
        }
        Ok(written)
    }
}
