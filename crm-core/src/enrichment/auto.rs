//! Automatic enrichment of new contacts.
//!
//! [`auto_enrich_routes`] routes `contact.created` to an [`ENRICH_CONTACT_JOB`] job;
//! [`AutoEnrichment`] runs it: when the workspace's settings turn
//! [`auto_enrich`](crate::model::WorkspaceSettings::auto_enrich) on, it asks the
//! [`Enricher`] (cache, waterfall, budget, rate limits) about the contact and its
//! account's domain, writes the answers back and appends `contact.enriched`.
//!
//! # The fill rule
//! Enrichment only fills fields that are empty (`None`, or a blank name): a value a
//! person, an import or an earlier source set is never overwritten, because a value
//! someone typed beats a vendor's guess. The email is never written (it is the
//! contact's identity) and an account is never created or renamed. A provider value
//! the model rejects (a phone not in E.164 form, a URL too long) is skipped, not
//! failed on.
//!
//! # Provenance
//! Every field enrichment writes gets a provenance entry in the contact's
//! `custom_fields`, written by the same `update_contact` call as the value:
//! `enrichment.<field>` (for account fields `enrichment.account.<field>`) holds
//! `"<provider>;<RFC 3339 time>"`. The providers answer no confidence, so none is
//! recorded. (The intake provenance table needs an intake row per value and accounts
//! have no extension fields, so the contact carries the account's entries too.)
//!
//! # Idempotency
//! Updates are compare-and-set, retried once on a version conflict with a fresh read;
//! a rerun finds the fields filled and writes nothing. `contact.enriched` is appended
//! only when something was written, keyed by the contact's version. A crash between
//! the update and the append loses that one event (the contact keeps its values and
//! their provenance).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::address::PhoneNumber;
use crate::clock::Clock;
use crate::enrichment::{
    AttemptResult, CompanyData, ContactData, ContactQuery, Enriched, Enricher, EnricherError,
    Source,
};
use crate::error::{StoreError, StoreErrorKind};
use crate::events;
use crate::ids::{ContactId, WorkspaceId};
use crate::jobs::{EventRoutes, JobContext, JobError, JobHandler};
use crate::model::{Account, Contact, Job, NewEvent};
use crate::outreach::settings::SettingsProvider;
use crate::store::{DynStore, EventStoreExt};

/// The job kind that enriches one new contact.
pub const ENRICH_CONTACT_JOB: &str = "enrichment.contact";

/// The prefix of the provenance entries in a contact's `custom_fields`.
pub const PROVENANCE_PREFIX: &str = "enrichment.";

/// The event kind that triggers [`ENRICH_CONTACT_JOB`].
const TRIGGER: &str = "contact.created";

/// The job payload for `event`: the contact id (the event's `payload.contact_id`,
/// else its subject) and the event id.
#[must_use]
pub fn enrich_contact_payload(event: &NewEvent) -> Value {
    let contact = event
        .payload
        .get("contact_id")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| Value::String(event.subject.clone()));
    json!({ "contact_id": contact, "event_id": event.id })
}

/// Adds the route `contact.created -> `[`ENRICH_CONTACT_JOB`] to `routes`. Every new
/// contact gets a job; the handler checks the workspace setting when it runs, so
/// turning auto-enrichment on or off takes effect without re-routing.
#[must_use]
pub fn auto_enrich_routes(routes: EventRoutes) -> EventRoutes {
    routes.route_with(TRIGGER, ENRICH_CONTACT_JOB, enrich_contact_payload)
}

/// Runs [`ENRICH_CONTACT_JOB`] jobs (see the module docs).
#[derive(Debug, Clone)]
pub struct AutoEnrichment {
    store: Arc<DynStore>,
    enricher: Arc<Enricher>,
    settings: Arc<dyn SettingsProvider>,
    clock: Arc<dyn Clock>,
}

impl AutoEnrichment {
    /// A handler writing to `store` what `enricher` finds, for workspaces whose
    /// `settings` enable it; provenance times come from `clock`.
    #[must_use]
    pub fn new(
        store: Arc<DynStore>,
        enricher: Arc<Enricher>,
        settings: Arc<dyn SettingsProvider>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            enricher,
            settings,
            clock,
        }
    }
}

/// A provider answer: its data and who gave it.
struct Answer<T> {
    data: T,
    provider: String,
}

/// Maps an orchestrated lookup's outcome to the answer, a miss (`None`) or a job error.
fn answer<T>(result: Result<Enriched<T>, EnricherError>) -> Result<Option<Answer<T>>, JobError> {
    let enriched = match result {
        Ok(enriched) => enriched,
        // Nothing to look the contact up by (no email, no name): nothing to do.
        Err(EnricherError::Invalid(_)) => return Ok(None),
        Err(err) if err.is_retryable() => return Err(JobError::retryable(err.to_string())),
        Err(err) => return Err(JobError::permanent(err.to_string())),
    };
    let provider = match enriched.source {
        Source::Cache { provider, .. } => provider,
        Source::Provider(name) => name.to_owned(),
        _ => String::new(),
    };
    match enriched.data {
        Some(data) => Ok(Some(Answer { data, provider })),
        // A miss because providers were skipped for their rate limit is not an answer:
        // try again later rather than settle for nothing.
        None if enriched
            .attempts
            .iter()
            .any(|a| a.result == AttemptResult::RateLimited) =>
        {
            Err(JobError::retryable(
                "enrichment providers are rate limited; nothing was looked up",
            ))
        }
        None => Ok(None),
    }
}

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

fn provenance(provider: &str, at: DateTime<Utc>) -> String {
    format!("{provider};{}", at.to_rfc3339())
}

/// Fills the empty fields of `contact` from `data`; returns the names written. A
/// value the model rejects is skipped.
fn fill_contact(contact: &mut Contact, data: &ContactData) -> Vec<&'static str> {
    let mut written = Vec::new();
    let mut try_fill = |name: &'static str, contact: &mut Contact, set: &dyn Fn(&mut Contact)| {
        let mut candidate = contact.clone();
        set(&mut candidate);
        if candidate != *contact && candidate.validate().is_ok() {
            *contact = candidate;
            written.push(name);
        }
    };
    if let Some(v) = data
        .first_name
        .as_deref()
        .filter(|_| contact.first_name.trim().is_empty())
    {
        try_fill("first_name", contact, &|c| {
            c.first_name = v.trim().to_owned()
        });
    }
    if let Some(v) = data
        .last_name
        .as_deref()
        .filter(|_| contact.last_name.trim().is_empty())
    {
        try_fill("last_name", contact, &|c| c.last_name = v.trim().to_owned());
    }
    if let Some(v) = data
        .title
        .as_deref()
        .filter(|_| blank(contact.title.as_deref()))
    {
        try_fill("title", contact, &|c| c.title = Some(v.trim().to_owned()));
    }
    if let Some(v) = data
        .linkedin_url
        .as_deref()
        .filter(|_| blank(contact.linkedin_url.as_deref()))
    {
        try_fill("linkedin_url", contact, &|c| {
            c.linkedin_url = Some(v.trim().to_owned());
        });
    }
    if let Some(phone) = data
        .phone
        .as_deref()
        .filter(|_| contact.phone.is_none())
        .and_then(|p| PhoneNumber::parse(p).ok())
    {
        try_fill("phone", contact, &|c| c.phone = Some(phone.clone()));
    }
    written
}

/// Fills the empty fields of `account` from `data`; returns the names written. The
/// name (never empty) and the domain (the lookup key) are never written.
fn fill_account(account: &mut Account, data: &CompanyData) -> Vec<&'static str> {
    let mut written = Vec::new();
    let mut try_fill = |name: &'static str, account: &mut Account, set: &dyn Fn(&mut Account)| {
        let mut candidate = account.clone();
        set(&mut candidate);
        if candidate != *account && candidate.validate().is_ok() {
            *account = candidate;
            written.push(name);
        }
    };
    if let Some(v) = data
        .industry
        .as_deref()
        .filter(|_| blank(account.industry.as_deref()))
    {
        try_fill("industry", account, &|a| {
            a.industry = Some(v.trim().to_owned())
        });
    }
    if let Some(v) = data
        .employee_count
        .filter(|_| account.employee_count.is_none())
    {
        try_fill("employee_count", account, &|a| a.employee_count = Some(v));
    }
    if let Some(v) = data
        .annual_revenue
        .filter(|_| account.annual_revenue.is_none())
    {
        try_fill("annual_revenue", account, &|a| a.annual_revenue = Some(v));
    }
    written
}

fn is_conflict(err: &StoreError) -> bool {
    err.kind() == StoreErrorKind::VersionConflict
}

impl AutoEnrichment {
    /// Writes `company` to the account, compare-and-set with one retry; returns the
    /// fields written.
    async fn write_account(
        &self,
        ws: WorkspaceId,
        account: Account,
        company: &CompanyData,
        now: DateTime<Utc>,
    ) -> Result<Vec<&'static str>, JobError> {
        let mut current = account;
        for attempt in 0..2 {
            let mut next = current.clone();
            let written = fill_account(&mut next, company);
            if written.is_empty() {
                return Ok(written);
            }
            next.updated_at = now;
            match self.store.update_account(&next).await {
                Ok(_) => return Ok(written),
                Err(err) if attempt == 0 && is_conflict(&err) => {
                    current = self.store.get_account(ws, current.id).await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(JobError::retryable("account changed concurrently twice"))
    }

    /// Writes `person` and the provenance of every written field to the contact,
    /// compare-and-set with one retry; returns the stored contact and the fields
    /// written (account fields as `account.<name>`), or `None` if nothing was.
    async fn write_contact(
        &self,
        contact: Contact,
        person: Option<&Answer<ContactData>>,
        account_fields: &[(&'static str, &str)],
        now: DateTime<Utc>,
    ) -> Result<Option<(Contact, Vec<String>)>, JobError> {
        let mut current = contact;
        for attempt in 0..2 {
            let mut next = current.clone();
            let mut fields = Vec::new();
            if let Some(person) = person {
                for name in fill_contact(&mut next, &person.data) {
                    next.custom_fields.insert(
                        format!("{PROVENANCE_PREFIX}{name}"),
                        provenance(&person.provider, now),
                    );
                    fields.push(name.to_owned());
                }
            }
            for (name, provider) in account_fields {
                next.custom_fields.insert(
                    format!("{PROVENANCE_PREFIX}account.{name}"),
                    provenance(provider, now),
                );
                fields.push(format!("account.{name}"));
            }
            if fields.is_empty() {
                return Ok(None);
            }
            next.updated_at = now;
            match self.store.update_contact(&next).await {
                Ok(stored) => return Ok(Some((stored, fields))),
                Err(err) if attempt == 0 && is_conflict(&err) => {
                    current = self
                        .store
                        .get_contact(current.workspace_id, current.id)
                        .await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(JobError::retryable("contact changed concurrently twice"))
    }
}

fn contact_id(payload: &Value) -> Result<ContactId, JobError> {
    let raw = payload
        .get("contact_id")
        .or_else(|| payload.get("payload").and_then(|p| p.get("contact_id")))
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::permanent("payload names no contact_id"))?;
    raw.parse()
        .map_err(|_| JobError::permanent("payload contact_id is not a contact id"))
}

#[async_trait]
impl JobHandler for AutoEnrichment {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let ws = job.workspace_id;
        let id = contact_id(&job.payload)?;
        // Fail closed: without settings we cannot know whether spending is allowed.
        // Every settings error is retryable, even an unknown workspace or invalid
        // settings: someone may fix them, and the job should run once they did.
        let settings = self
            .settings
            .settings(ws)
            .await
            .map_err(|err| JobError::retryable(err.to_string()))?;
        if !settings.auto_enrich {
            return Ok(());
        }
        let contact = match self.store.get_contact(ws, id).await {
            Ok(contact) => contact,
            // Deleted since it was created: nothing to enrich.
            Err(err) if err.kind() == StoreErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let account = match contact.account_id {
            Some(account_id) => Some(self.store.get_account(ws, account_id).await?),
            None => None,
        };
        let domain = account.as_ref().and_then(|a| a.domain.clone());

        let query = ContactQuery {
            email: contact.email.clone(),
            first_name: Some(contact.first_name.clone()).filter(|n| !n.trim().is_empty()),
            last_name: Some(contact.last_name.clone()).filter(|n| !n.trim().is_empty()),
            domain: domain.clone(),
        };
        let person = answer(self.enricher.enrich_contact(ws, &query).await)?;
        let company = match &domain {
            Some(domain) => answer(self.enricher.enrich_company(ws, domain).await)?,
            None => None,
        };

        let now = self.clock.now();
        let mut account_fields = Vec::new();
        if let (Some(account), Some(company)) = (account, &company) {
            for name in self.write_account(ws, account, &company.data, now).await? {
                account_fields.push((name, company.provider.as_str()));
            }
        }
        let Some((stored, fields)) = self
            .write_contact(contact, person.as_ref(), &account_fields, now)
            .await?
        else {
            tracing::debug!(%ws, contact = %id, "auto-enrichment found nothing to fill");
            return Ok(());
        };
        let providers: BTreeSet<String> = person
            .iter()
            .map(|p| p.provider.clone())
            .chain(account_fields.iter().map(|(_, p)| (*p).to_owned()))
            .collect();
        let providers: Vec<String> = providers.into_iter().collect();
        let event = events::contact_enriched(&stored, &fields, &providers)
            .map_err(|err| JobError::permanent(err.to_string()))?;
        self.store.append_event(&event).await?;
        tracing::debug!(%ws, contact = %id, fields = fields.len(), "auto-enrichment wrote fields");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Value) -> NewEvent {
        NewEvent::new(
            WorkspaceId::new(),
            TRIGGER,
            "subject-id",
            payload,
            "k",
            DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn payload_names_the_contact() {
        let c = ContactId::new();
        let payload = enrich_contact_payload(&event(json!({ "contact_id": c })));
        assert_eq!(contact_id(&payload).unwrap(), c);
        assert!(!contact_id(&json!({})).unwrap_err().is_retryable());
        assert!(
            !contact_id(&json!({"contact_id": "x"}))
                .unwrap_err()
                .is_retryable()
        );
    }

    #[test]
    fn route_maps_contact_created_to_the_job() {
        let routes = auto_enrich_routes(EventRoutes::new());
        let c = ContactId::new();
        let jobs = routes
            .jobs_for(&event(json!({ "contact_id": c })), DateTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind, ENRICH_CONTACT_JOB);
        assert_eq!(contact_id(&jobs[0].payload).unwrap(), c);
    }
}
