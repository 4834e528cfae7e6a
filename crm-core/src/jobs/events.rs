//! The event bus: append an event and enqueue the jobs it triggers, atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::model::{Event, Job, NewEvent};
use crate::store::{EventStore, EventStoreExt, Inserted};

/// Builds a job payload from an event.
pub type Projection = Arc<dyn Fn(&NewEvent) -> Value + Send + Sync>;

/// One job kind an event kind triggers.
#[derive(Clone)]
struct Route {
    job_kind: String,
    projection: Option<Projection>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("job_kind", &self.job_kind)
            .field("projection", &self.projection.as_ref().map(|_| "Fn"))
            .finish()
    }
}

/// Which jobs each event kind triggers.
///
/// A job's payload is the whole event by default ([`event_payload`]) or a projection
/// of it. Each (event kind, job kind) pair is routed once: routing the same pair again
/// replaces the earlier route.
#[derive(Debug, Clone, Default)]
pub struct EventRoutes {
    routes: BTreeMap<String, Vec<Route>>,
}

impl EventRoutes {
    /// No routes: events are only appended.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Events of `event_kind` enqueue a `job_kind` job whose payload is the event.
    #[must_use]
    pub fn route(self, event_kind: impl Into<String>, job_kind: impl Into<String>) -> Self {
        self.add(event_kind.into(), job_kind.into(), None)
    }

    /// Events of `event_kind` enqueue a `job_kind` job whose payload is
    /// `projection(event)`.
    #[must_use]
    pub fn route_with(
        self,
        event_kind: impl Into<String>,
        job_kind: impl Into<String>,
        projection: impl Fn(&NewEvent) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.add(
            event_kind.into(),
            job_kind.into(),
            Some(Arc::new(projection)),
        )
    }

    fn add(mut self, event_kind: String, job_kind: String, projection: Option<Projection>) -> Self {
        let routes = self.routes.entry(event_kind).or_default();
        routes.retain(|r| r.job_kind != job_kind);
        routes.push(Route {
            job_kind,
            projection,
        });
        self
    }

    /// The jobs `event` triggers, due at `now`, each keyed
    /// `"{event_id}:{job_kind}"` ([`job_key`]) so routing an event twice (the bus and
    /// the [`EventRouter`](crate::jobs::EventRouter) alike) enqueues each job once.
    /// A projection that yields an invalid job is `Invalid`.
    pub fn jobs_for(&self, event: &NewEvent, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let Some(routes) = self.routes.get(&event.kind) else {
            return Ok(Vec::new());
        };
        routes
            .iter()
            .map(|route| {
                let payload = match &route.projection {
                    Some(project) => project(event),
                    None => event_payload(event),
                };
                Ok(
                    Job::new(event.workspace_id, route.job_kind.clone(), payload, now)?
                        .with_idempotency_key(job_key(event, &route.job_kind)),
                )
            })
            .collect()
    }

    /// Whether no event kind is routed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The job kinds `event_kind` triggers, in the order they were routed.
    pub fn job_kinds(&self, event_kind: &str) -> impl Iterator<Item = &str> {
        self.routes
            .get(event_kind)
            .into_iter()
            .flatten()
            .map(|r| r.job_kind.as_str())
    }
}

/// The default job payload of an event: `{event_id, kind, subject, payload,
/// occurred_at}`.
#[must_use]
pub fn event_payload(event: &NewEvent) -> Value {
    json!({
        "event_id": event.id,
        "kind": event.kind,
        "subject": event.subject,
        "payload": event.payload,
        "occurred_at": event.occurred_at,
    })
}

/// The idempotency key of the `job_kind` job triggered by `event`:
/// `"{event_id}:{job_kind}"`.
#[must_use]
pub fn job_key(event: &NewEvent, job_kind: &str) -> String {
    format!("{}:{job_kind}", event.id)
}

/// Publishes events: appends each with its idempotency key and, in the same atomic
/// step, enqueues the jobs its kind is routed to.
///
/// Republishing an event with the same idempotency key returns the stored event with
/// `created: false` and enqueues nothing, so a retried publish never doubles work.
/// Jobs are due at the clock's now and keyed `"{event_id}:{job_kind}"`.
#[derive(Debug, Clone)]
pub struct EventBus {
    store: Arc<dyn EventStore>,
    routes: EventRoutes,
    clock: Arc<dyn Clock>,
}

impl EventBus {
    /// A bus over `store` with `routes`.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>, routes: EventRoutes, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            routes,
            clock,
        }
    }

    /// The routes.
    #[must_use]
    pub fn routes(&self) -> &EventRoutes {
        &self.routes
    }

    /// The jobs `event` triggers, as [`publish`](Self::publish) would enqueue them.
    pub fn jobs_for(&self, event: &NewEvent) -> Result<Vec<Job>, StoreError> {
        self.routes.jobs_for(event, self.clock.now())
    }

    /// Appends `event` and enqueues its jobs atomically (see
    /// [`EventStore::append_event_with_jobs`]). An invalid event or route is `Invalid`.
    pub async fn publish(&self, event: &NewEvent) -> Result<Inserted<Event>, StoreError> {
        event.validate()?;
        let jobs = self.jobs_for(event)?;
        if jobs.is_empty() {
            self.store.append_event(event).await
        } else {
            self.store.append_event_with_jobs(event, &jobs).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::WorkspaceId;
    use chrono::{TimeZone, Utc};

    #[derive(Debug)]
    struct NoStore;

    #[async_trait::async_trait]
    impl EventStore for NoStore {
        async fn append_events(&self, _: &[NewEvent]) -> Result<Vec<Inserted<Event>>, StoreError> {
            Err(StoreError::not_found("event", "-"))
        }
        async fn append_event_with_jobs(
            &self,
            _: &NewEvent,
            _: &[Job],
        ) -> Result<Inserted<Event>, StoreError> {
            Err(StoreError::not_found("event", "-"))
        }
        async fn get_event(
            &self,
            _: WorkspaceId,
            id: crate::ids::EventId,
        ) -> Result<Event, StoreError> {
            Err(StoreError::not_found("event", id))
        }
        async fn list_events(
            &self,
            _: crate::store::Scope,
            _: i64,
            _: u32,
        ) -> Result<Vec<Event>, StoreError> {
            Ok(Vec::new())
        }
        async fn list_unrouted_events(
            &self,
            _: crate::store::Scope,
            _: u32,
        ) -> Result<Vec<Event>, StoreError> {
            Ok(Vec::new())
        }
        async fn mark_events_routed(
            &self,
            _: WorkspaceId,
            _: &[crate::ids::EventId],
            _: &[Job],
        ) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[test]
    fn routes_build_keyed_jobs_with_payloads() {
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let routes = EventRoutes::new()
            .route("contact.created", "scoring.recompute")
            .route_with(
                "contact.created",
                "enrich.contact",
                |e| json!({ "contact": e.subject }),
            )
            .route("contact.created", "scoring.recompute");
        let bus = EventBus::new(Arc::new(NoStore), routes, Arc::new(ManualClock::new(now)));
        let ws = WorkspaceId::new();
        let event =
            NewEvent::new(ws, "contact.created", "c-1", json!({"a": 1}), "k-1", now).unwrap();
        let jobs = bus.jobs_for(&event).unwrap();
        let kinds: Vec<_> = jobs.iter().map(|j| j.kind.as_str()).collect();
        assert_eq!(kinds, ["enrich.contact", "scoring.recompute"]);
        assert_eq!(jobs[0].payload, json!({ "contact": "c-1" }));
        assert_eq!(jobs[1].payload["payload"], json!({"a": 1}));
        assert_eq!(
            jobs[1].idempotency_key.as_deref(),
            Some(format!("{}:scoring.recompute", event.id).as_str())
        );
        let other = NewEvent::new(ws, "deal.won", "d-1", json!(null), "k-2", now).unwrap();
        assert!(bus.jobs_for(&other).unwrap().is_empty());
    }
}
