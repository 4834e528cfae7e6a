//! Job handlers and event routes that keep scores current.
//!
//! - [`scoring_routes`] routes `contact.created`, `contact.enriched`,
//!   `activity.logged` and `deal.stage_changed` to a [`RESCORE_CONTACT`] job whose
//!   payload holds the contact id (the event's `payload.contact_id`, else its subject).
//! - [`RescoreContactHandler`] runs it; a payload without a contact (a deal with no
//!   contact) is done at once.
//! - [`RescoreAllHandler`] runs [`RESCORE_ALL`]: the bulk recalculation after a model
//!   change, and the nightly decay run ([`nightly_decay`]).

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::ValidationError;
use crate::ids::{ContactId, WorkspaceId};
use crate::jobs::{EventRoutes, JobContext, JobError, JobHandler, PeriodicJob};
use crate::model::{Job, NewEvent};
use crate::scoring::service::{RESCORE_ALL, RESCORE_CONTACT, Scorer, ScoringError};

/// The event kinds that trigger a rescore of their contact.
pub const RESCORE_TRIGGERS: [&str; 4] = [
    "contact.created",
    "contact.enriched",
    "activity.logged",
    "deal.stage_changed",
];

impl From<ScoringError> for JobError {
    fn from(err: ScoringError) -> Self {
        if err.is_retryable() {
            JobError::retryable(err.to_string())
        } else {
            JobError::permanent(err.to_string())
        }
    }
}

/// The job payload for a rescore triggered by `event`.
#[must_use]
pub fn rescore_payload(event: &NewEvent) -> Value {
    let contact = event
        .payload
        .get("contact_id")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| Value::String(event.subject.clone()));
    json!({ "contact_id": contact, "event_id": event.id })
}

/// Adds the rescore routes of [`RESCORE_TRIGGERS`] to `routes`.
#[must_use]
pub fn scoring_routes(routes: EventRoutes) -> EventRoutes {
    RESCORE_TRIGGERS.iter().fold(routes, |routes, kind| {
        routes.route_with(*kind, RESCORE_CONTACT, rescore_payload)
    })
}

/// The nightly decay run for one workspace: [`RESCORE_ALL`] at 03:00 UTC.
pub fn nightly_decay(workspace_id: WorkspaceId) -> Result<PeriodicJob, ValidationError> {
    Ok(PeriodicJob::new(RESCORE_ALL, "0 0 3 * * *")?
        .with_workspace(workspace_id)
        .with_payload(json!({ "reason": "decay" })))
}

/// Runs [`RESCORE_CONTACT`] jobs.
#[derive(Debug, Clone)]
pub struct RescoreContactHandler {
    scorer: Scorer,
}

impl RescoreContactHandler {
    /// A handler over `scorer`.
    #[must_use]
    pub fn new(scorer: Scorer) -> Self {
        Self { scorer }
    }
}

#[async_trait]
impl JobHandler for RescoreContactHandler {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let Some(raw) = job.payload.get("contact_id").and_then(Value::as_str) else {
            return Ok(());
        };
        let contact: ContactId = raw
            .parse()
            .map_err(|_| JobError::permanent("payload contact_id is not a contact id"))?;
        self.scorer
            .rescore_contacts(job.workspace_id, &[contact], &job.id.to_string())
            .await?;
        Ok(())
    }
}

/// Runs [`RESCORE_ALL`] jobs.
#[derive(Debug, Clone)]
pub struct RescoreAllHandler {
    scorer: Scorer,
}

impl RescoreAllHandler {
    /// A handler over `scorer`.
    #[must_use]
    pub fn new(scorer: Scorer) -> Self {
        Self { scorer }
    }
}

#[async_trait]
impl JobHandler for RescoreAllHandler {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        self.scorer
            .rescore_all(job.workspace_id, &job.id.to_string())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn event(payload: Value) -> NewEvent {
        NewEvent::new(
            WorkspaceId::new(),
            "contact.created",
            "subject-id",
            payload,
            "k",
            DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn payload_prefers_the_events_contact_id_over_its_subject() {
        let c = ContactId::new();
        assert_eq!(
            rescore_payload(&event(json!({ "contact_id": c })))["contact_id"],
            json!(c)
        );
        assert_eq!(
            rescore_payload(&event(json!({ "contact_id": null })))["contact_id"],
            json!("subject-id")
        );
    }

    #[test]
    fn a_deal_stage_change_rescores_the_deals_contact() {
        use crate::ids::{PipelineId, StageId};
        use crate::model::{Deal, NewDeal};
        use crate::{Currency, Money};
        let contact = ContactId::new();
        let input = NewDeal {
            pipeline_id: PipelineId::new(),
            stage_id: StageId::new(),
            name: "Renewal".into(),
            amount: Money::new(1_000, Currency::new("EUR").unwrap()).unwrap(),
            account_id: None,
            contact_id: Some(contact),
            owner_id: None,
            expected_close: None,
        };
        let before = Deal::create(WorkspaceId::new(), input, DateTime::UNIX_EPOCH).unwrap();
        let mut after = before.clone();
        after.stage_id = StageId::new();
        after.version = 2;
        let events = crate::events::deal_saved(Some(&before), &after).unwrap();
        let moved = events
            .iter()
            .find(|e| e.kind == "deal.stage_changed")
            .unwrap();
        assert_eq!(rescore_payload(moved)["contact_id"], json!(contact));
    }

    #[test]
    fn every_trigger_is_routed() {
        let routes = scoring_routes(EventRoutes::new());
        for kind in RESCORE_TRIGGERS {
            assert_eq!(
                routes.job_kinds(kind).collect::<Vec<_>>(),
                [RESCORE_CONTACT]
            );
        }
        assert_eq!(routes.job_kinds("deal.won").count(), 0);
    }

    #[test]
    fn the_nightly_decay_is_a_daily_bulk_rescore() {
        let ws = WorkspaceId::new();
        let job = nightly_decay(ws).unwrap();
        assert_eq!(job.kind(), RESCORE_ALL);
        assert_eq!(job.workspace_id(), ws);
    }
}
