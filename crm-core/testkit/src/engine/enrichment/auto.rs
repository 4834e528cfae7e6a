//! Auto-enrichment: `contact.created` routed to the enrichment job, run by a worker
//! against a real store.

use std::sync::Arc;

use serde_json::json;

use crate::enrichment::{CallLog, Script, ScriptedProvider};
use crate::store::fixtures::{base, new_account, new_contact, ok, unique_domain, unique_email};
use crm_core::DynStore;
use crm_core::clock::{Clock, ManualClock};
use crm_core::enrichment::{
    AutoEnrichment, ENRICH_CONTACT_JOB, Enricher, LookupKind, Waterfall, auto_enrich_routes,
};
use crm_core::ids::WorkspaceId;
use crm_core::jobs::{
    EventRouter, EventRoutes, HandlerRegistry, JobContext, JobHandler, Worker, WorkerConfig,
};
use crm_core::model::{Contact, Event, Job, WorkspaceSettings};
use crm_core::outreach::settings::StaticSettings;
use crm_core::store::{JobStore, Scope};

/// One provider `p` that hits for contacts and companies.
fn provider(log: &CallLog) -> Waterfall {
    let p = Arc::new(
        ScriptedProvider::new("p", log)
            .answering(LookupKind::Contact, Script::Hit)
            .answering(LookupKind::Company, Script::Hit),
    );
    Waterfall::new()
        .then(LookupKind::Contact, p.clone())
        .then(LookupKind::Company, p)
}

fn handler(store: &Arc<DynStore>, clock: &ManualClock, log: &CallLog, on: bool) -> AutoEnrichment {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let enricher = Enricher::new(store.clone(), clock.clone(), provider(log));
    let settings = StaticSettings::new(WorkspaceSettings::default().with_auto_enrich(on));
    AutoEnrichment::new(store.clone(), Arc::new(enricher), Arc::new(settings), clock)
}

/// Inserts, as intake or a host would, an account without industry or head count and
/// a contact of it with no title but a LinkedIn URL someone set.
async fn new_lead(store: &DynStore, ws: WorkspaceId) -> Contact {
    let mut account = new_account(ws, &unique_domain());
    account.industry = None;
    account.employee_count = None;
    let account = ok(store.insert_account(&account).await, "insert account");
    let mut contact = new_contact(ws, &unique_email());
    contact.account_id = Some(account.id);
    contact.linkedin_url = Some("https://www.linkedin.com/in/set-by-hand".into());
    ok(store.insert_contact(&contact).await, "insert contact")
}

/// Routes the workspace's events and drains the worker; returns the jobs claimed.
async fn route_and_run(
    store: &Arc<DynStore>,
    clock: &ManualClock,
    ws: WorkspaceId,
    handler: AutoEnrichment,
) -> u64 {
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let routes = auto_enrich_routes(EventRoutes::new());
    let router = EventRouter::new(store.clone(), routes, dyn_clock.clone());
    ok(
        router.route_pending(Scope::Workspace(ws), 100).await,
        "route",
    );
    let jobs: Arc<dyn JobStore> = store.clone();
    let registry = HandlerRegistry::new().with(ENRICH_CONTACT_JOB, Arc::new(handler));
    let config = WorkerConfig::default()
        .with_name("auto-enrich-test")
        .with_scope(Scope::Workspace(ws));
    let stats = ok(
        Worker::new(jobs, registry, dyn_clock, config).drain().await,
        "drain",
    );
    assert_eq!(
        stats.claimed, stats.succeeded,
        "every job succeeded: {stats:?}"
    );
    stats.claimed
}

async fn enriched_events(store: &DynStore, ws: WorkspaceId) -> Vec<Event> {
    let events = ok(
        store.list_events(Scope::Workspace(ws), 0, 1000).await,
        "list events",
    );
    events
        .into_iter()
        .filter(|e| e.kind == "contact.enriched")
        .collect()
}

/// A contact inserted through the store produces `contact.created`; routed, it
/// enqueues one enrichment job; the worker fills the empty contact and account fields
/// with provenance, leaves set fields alone and appends `contact.enriched` once. A
/// second run writes nothing and appends nothing.
pub async fn auto_enrich_fills_empty_fields_with_provenance(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let clock = ManualClock::new(base());
    let log = CallLog::new();
    let contact = new_lead(&*store, ws).await;
    let account_id = contact.account_id.expect("account");

    let claimed = route_and_run(&store, &clock, ws, handler(&store, &clock, &log, true)).await;
    assert_eq!(claimed, 1, "contact.created enqueued one enrichment job");
    assert_eq!(
        log.calls(),
        vec![("p", LookupKind::Contact), ("p", LookupKind::Company)],
        "the contact and its account's domain were looked up"
    );

    let after = ok(store.get_contact(ws, contact.id).await, "get contact");
    assert_eq!(
        after.title.as_deref(),
        Some("p"),
        "the empty title is filled"
    );
    assert_eq!(
        after.linkedin_url, contact.linkedin_url,
        "a value someone set is never overwritten"
    );
    assert_eq!(
        (after.first_name.as_str(), after.email.clone()),
        (contact.first_name.as_str(), contact.email.clone()),
        "names and email stay"
    );
    let stamp = format!("p;{}", base().to_rfc3339());
    assert_eq!(
        after.custom_fields.get("enrichment.title"),
        Some(&stamp),
        "the title's provenance: provider and time"
    );
    assert_eq!(
        after.custom_fields.get("enrichment.linkedin_url"),
        None,
        "no provenance for a field enrichment did not write"
    );
    assert_eq!(
        after.custom_fields.get("enrichment.account.industry"),
        Some(&stamp)
    );

    let account = ok(store.get_account(ws, account_id).await, "get account");
    assert_eq!(account.industry.as_deref(), Some("p industry"));
    assert_eq!(account.employee_count, Some(10));
    assert_eq!(
        account.name, "Acme",
        "the account's name is never overwritten"
    );

    let events = enriched_events(&*store, ws).await;
    assert_eq!(events.len(), 1, "contact.enriched appended once");
    assert_eq!(events[0].subject, contact.id.to_string());
    assert_eq!(
        events[0].payload["fields"],
        json!(["title", "account.industry", "account.employee_count"])
    );
    assert_eq!(events[0].payload["providers"], json!(["p"]));

    // At least once: the same job again (now served from the cache) writes nothing.
    let job = Job::new(
        ws,
        ENRICH_CONTACT_JOB,
        json!({ "contact_id": contact.id }),
        base(),
    )
    .expect("job");
    let rerun = handler(&store, &clock, &log, true);
    rerun
        .handle(&job, &JobContext::new("rerun", base(), 1))
        .await
        .expect("rerun succeeds");
    let again = ok(store.get_contact(ws, contact.id).await, "get contact");
    assert_eq!(again.version, after.version, "nothing new was written");
    assert_eq!(
        enriched_events(&*store, ws).await.len(),
        1,
        "no second event"
    );
}

/// With `auto_enrich` off the job completes without asking any provider or writing
/// anything.
pub async fn auto_enrich_off_does_nothing(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let clock = ManualClock::new(base());
    let log = CallLog::new();
    let contact = new_lead(&*store, ws).await;

    let claimed = route_and_run(&store, &clock, ws, handler(&store, &clock, &log, false)).await;
    assert_eq!(claimed, 1, "the job is still routed and completes");
    assert!(log.calls().is_empty(), "no provider was asked");
    let after = ok(store.get_contact(ws, contact.id).await, "get contact");
    assert_eq!(after, contact, "the contact is unchanged");
    assert!(enriched_events(&*store, ws).await.is_empty());
}

/// Settings that cannot be read.
#[derive(Debug)]
struct Unreadable;

#[async_trait::async_trait]
impl crm_core::outreach::settings::SettingsProvider for Unreadable {
    async fn settings(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<WorkspaceSettings, crm_core::outreach::settings::SettingsError> {
        Err(crm_core::outreach::settings::SettingsError::UnknownWorkspace { workspace_id })
    }
}

/// Failures map to the worker's outcomes: unreadable settings fail closed (retryable,
/// no provider asked), a transient provider failure is retryable, a permanent one is
/// permanent; none writes anything.
pub async fn auto_enrich_errors_retry_or_dead_letter(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let clock = ManualClock::new(base());
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let contact = new_lead(&*store, ws).await;
    let job = Job::new(
        ws,
        ENRICH_CONTACT_JOB,
        json!({ "contact_id": contact.id }),
        base(),
    )
    .expect("job");
    let ctx = JobContext::new("errors", base(), 1);
    let on = Arc::new(StaticSettings::new(
        WorkspaceSettings::default().with_auto_enrich(true),
    ));

    let log = CallLog::new();
    let enricher = Arc::new(Enricher::new(
        store.clone(),
        dyn_clock.clone(),
        provider(&log),
    ));
    let closed = AutoEnrichment::new(
        store.clone(),
        enricher,
        Arc::new(Unreadable),
        dyn_clock.clone(),
    );
    let err = closed.handle(&job, &ctx).await.expect_err("fails closed");
    assert!(err.is_retryable(), "a settings error is retryable: {err:?}");
    assert!(log.calls().is_empty(), "no provider asked without settings");

    for (retryable, what) in [(true, "transient"), (false, "permanent")] {
        let log = CallLog::new();
        let p = Arc::new(
            ScriptedProvider::new("down", &log)
                .answering(LookupKind::Contact, Script::Fail { retryable }),
        );
        let waterfall = Waterfall::new().then(LookupKind::Contact, p);
        let enricher = Arc::new(Enricher::new(store.clone(), dyn_clock.clone(), waterfall));
        let failing = AutoEnrichment::new(store.clone(), enricher, on.clone(), dyn_clock.clone());
        let err = failing.handle(&job, &ctx).await.expect_err(what);
        assert_eq!(
            err.is_retryable(),
            retryable,
            "{what} provider failure: {err:?}"
        );
        assert!(
            !err.reason().contains("Lovelace") && !err.reason().contains('@'),
            "no personal data in the stored reason"
        );
    }
    let after = ok(store.get_contact(ws, contact.id).await, "get contact");
    assert_eq!(after, contact, "nothing was written");
    assert!(enriched_events(&*store, ws).await.is_empty());
}
