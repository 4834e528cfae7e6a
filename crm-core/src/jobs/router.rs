//! The event router: turns the events stores append with their own state changes into
//! the jobs their kinds are routed to.
//!
//! Stores append every catalogue event ([`crate::events`]) in the same atomic step as
//! the change it records, without jobs: a store cannot know the host's routes. Those
//! events are *unrouted* until an [`EventRouter`] lists them
//! ([`EventStore::list_unrouted_events`]), builds each one's jobs with the same
//! [`EventRoutes`] the [`EventBus`](crate::jobs::EventBus) uses, and enqueues the jobs
//! while marking the events routed, atomically per workspace
//! ([`EventStore::mark_events_routed`]).
//!
//! A crash between listing and marking loses nothing: the events stay unrouted and the
//! next pass routes them again; job keys (`"{event_id}:{job_kind}"`) make a job enqueued
//! twice exist once. Events the bus published with their jobs are routed already and
//! never listed.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::{EventId, WorkspaceId};
use crate::model::{Event, Job, NewEvent};
use crate::store::{EventStore, Scope};

use super::events::EventRoutes;

/// What one [`EventRouter::route_pending`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteReport {
    /// Unrouted events the pass listed.
    pub listed: u64,
    /// Events the pass marked routed (fewer than `listed` when another router marked
    /// some first).
    pub routed: u64,
    /// Jobs the pass offered to the store (a job whose key existed was skipped there).
    pub jobs: u64,
    /// Events whose jobs could not be built (a projection yielded an invalid job):
    /// marked routed without jobs, so one bad route cannot block every later event.
    pub unroutable: u64,
}

/// Routes the events stores appended without their jobs (see the module docs).
#[derive(Debug, Clone)]
pub struct EventRouter {
    store: Arc<dyn EventStore>,
    routes: EventRoutes,
    clock: Arc<dyn Clock>,
}

impl EventRouter {
    /// A router over `store` with `routes`; jobs are due at `clock`'s now.
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

    /// Routes up to `limit` unrouted events of `scope`, oldest first: builds each
    /// one's jobs and, per workspace, enqueues them and marks the events routed in one
    /// store call. An event of a kind with no route is marked routed with no jobs.
    /// Call it until `listed` is below `limit` to drain the backlog.
    pub async fn route_pending(&self, scope: Scope, limit: u32) -> Result<RouteReport, StoreError> {
        let events = self.store.list_unrouted_events(scope, limit).await?;
        let now = self.clock.now();
        let mut report = RouteReport {
            listed: events.len() as u64,
            ..RouteReport::default()
        };
        let mut batches: BTreeMap<WorkspaceId, (Vec<EventId>, Vec<Job>)> = BTreeMap::new();
        for event in events {
            let (ids, jobs) = batches.entry(event.workspace_id).or_default();
            ids.push(event.id);
            match self.routes.jobs_for(&as_new(event), now) {
                Ok(built) => jobs.extend(built),
                Err(err) => {
                    tracing::warn!(error = %err, "an event's jobs could not be built; it is marked routed without them");
                    report.unroutable += 1;
                }
            }
        }
        for (workspace_id, (ids, jobs)) in batches {
            report.routed += self
                .store
                .mark_events_routed(workspace_id, &ids, &jobs)
                .await?;
            report.jobs += jobs.len() as u64;
        }
        Ok(report)
    }
}

/// The appended form of a stored event, as routes and projections take it.
fn as_new(event: Event) -> NewEvent {
    NewEvent {
        id: event.id,
        workspace_id: event.workspace_id,
        kind: event.kind,
        subject: event.subject,
        payload: event.payload,
        idempotency_key: event.idempotency_key,
        occurred_at: event.occurred_at,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::Inserted;

    /// One `mark_events_routed` call: workspace, event ids, jobs.
    type Marked = (WorkspaceId, Vec<EventId>, Vec<Job>);

    /// An event log that records what the router marks and enqueues.
    #[derive(Debug, Default)]
    struct Log {
        unrouted: Mutex<Vec<Event>>,
        marked: Mutex<Vec<Marked>>,
    }

    #[async_trait::async_trait]
    impl EventStore for Log {
        async fn append_events(&self, _: &[NewEvent]) -> Result<Vec<Inserted<Event>>, StoreError> {
            unreachable!("the router never appends")
        }
        async fn append_event_with_jobs(
            &self,
            _: &NewEvent,
            _: &[Job],
        ) -> Result<Inserted<Event>, StoreError> {
            unreachable!("the router never appends")
        }
        async fn get_event(&self, _: WorkspaceId, id: EventId) -> Result<Event, StoreError> {
            Err(StoreError::not_found("event", id))
        }
        async fn list_events(&self, _: Scope, _: i64, _: u32) -> Result<Vec<Event>, StoreError> {
            Ok(Vec::new())
        }
        async fn list_unrouted_events(
            &self,
            scope: Scope,
            limit: u32,
        ) -> Result<Vec<Event>, StoreError> {
            let events = self.unrouted.lock().unwrap();
            Ok(events
                .iter()
                .filter(|e| scope.covers(e.workspace_id))
                .take(limit as usize)
                .cloned()
                .collect())
        }
        async fn mark_events_routed(
            &self,
            ws: WorkspaceId,
            ids: &[EventId],
            jobs: &[Job],
        ) -> Result<u64, StoreError> {
            let mut events = self.unrouted.lock().unwrap();
            let before = events.len();
            events.retain(|e| !(e.workspace_id == ws && ids.contains(&e.id)));
            self.marked
                .lock()
                .unwrap()
                .push((ws, ids.to_vec(), jobs.to_vec()));
            Ok((before - events.len()) as u64)
        }
    }

    fn stored(ws: WorkspaceId, kind: &str, position: i64) -> Event {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let new = NewEvent::new(ws, kind, "s", json!({"n": position}), kind, now).unwrap();
        Event::from_new(new, position)
    }

    #[tokio::test]
    async fn routes_each_workspace_in_one_call_and_marks_unrouted_kinds_too() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
        let log = Arc::new(Log::default());
        let events = vec![
            stored(a, "contact.created", 1),
            stored(b, "contact.created", 2),
            stored(a, "deal.created", 3),
        ];
        log.unrouted.lock().unwrap().extend(events.clone());
        let routes = EventRoutes::new()
            .route("contact.created", "scoring.recompute")
            .route_with(
                "contact.created",
                "enrich.contact",
                |e| json!({"c": e.subject}),
            );
        let router = EventRouter::new(log.clone(), routes, Arc::new(ManualClock::new(now)));

        let report = router.route_pending(Scope::All, 100).await.unwrap();
        assert_eq!(
            report,
            RouteReport {
                listed: 3,
                routed: 3,
                jobs: 4,
                unroutable: 0
            }
        );
        let marked = log.marked.lock().unwrap().clone();
        assert_eq!(marked.len(), 2, "one call per workspace");
        let (ws, ids, jobs) = marked.iter().find(|m| m.0 == a).unwrap();
        assert_eq!((*ws, ids.clone()), (a, vec![events[0].id, events[2].id]));
        assert_eq!(jobs.len(), 2, "deal.created has no route and no job");
        assert!(jobs.iter().all(|j| j.run_at == now && j.workspace_id == a));
        assert_eq!(
            jobs[0].idempotency_key.as_deref(),
            Some(format!("{}:scoring.recompute", events[0].id).as_str()),
            "the bus's key, so a job routed twice exists once"
        );
        assert_eq!(jobs[1].payload, json!({"c": "s"}));

        let again = router.route_pending(Scope::All, 100).await.unwrap();
        assert_eq!(again, RouteReport::default(), "nothing is left to route");
    }

    #[tokio::test]
    async fn honours_scope_and_limit() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
        let log = Arc::new(Log::default());
        log.unrouted.lock().unwrap().extend([
            stored(a, "x.one", 1),
            stored(b, "x.two", 2),
            stored(a, "x.three", 3),
        ]);
        let router = EventRouter::new(
            log.clone(),
            EventRoutes::new(),
            Arc::new(ManualClock::new(now)),
        );
        let first = router.route_pending(Scope::Workspace(a), 1).await.unwrap();
        assert_eq!((first.listed, first.routed), (1, 1));
        let left: Vec<_> = log
            .unrouted
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect();
        assert_eq!(left, ["x.two", "x.three"], "oldest of the scope first");
    }
}
