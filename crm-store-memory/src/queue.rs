//! The event log and the durable job queue.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{EventId, JobId, WorkspaceId};
use crm_core::model::{Event, Job, JobStatus, Lease, NewEvent};
use crm_core::store::takeover_cutoff;
use crm_core::store::{Claim, EventStore, Inserted, JobStore, Page, Scope, validate_limit};
use crm_core::{StoreError, ValidationError};

use crate::table::{Fenced, Table, Unique, deadline, limit};
use crate::{MemoryStore, Tables};

#[path = "queue_batch.rs"]
mod batch;

/// The event log and job tables.
#[derive(Default)]
pub(crate) struct QueueTables {
    /// Events by position; positions come from one counter for the whole store.
    events: BTreeMap<i64, Event>,
    /// (workspace, event id) -> position.
    event_ids: HashMap<(WorkspaceId, EventId), i64>,
    /// (workspace, idempotency key) -> position.
    event_keys: HashMap<WorkspaceId, HashMap<String, i64>>,
    last_position: i64,
    /// Positions of the events no router has turned into jobs yet.
    unrouted: BTreeSet<i64>,
    jobs: Table<Fenced<Job>>,
    /// Idempotency key -> job.
    job_keys: Unique<String, JobId>,
    /// Queued jobs by (run_at, id): the claim order.
    due: BTreeSet<(DateTime<Utc>, JobId, WorkspaceId)>,
    /// The earliest run time of the jobs this call queued: `MemoryStore::with` wakes
    /// the workers.
    pub(crate) wake: Option<DateTime<Utc>>,
}

impl QueueTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([("events", self.events.len()), ("jobs", self.jobs.len())]);
    }

    fn event_by_key(&self, ws: WorkspaceId, key: &str) -> Option<&Event> {
        self.event_keys
            .get(&ws)
            .and_then(|keys| keys.get(key))
            .and_then(|pos| self.events.get(pos))
    }

    /// Stores a job, keeping the key index and the claim queue in step.
    fn put_job(&mut self, row: Fenced<Job>) -> Job {
        let (ws, id) = (row.row.workspace_id, row.row.id);
        let old_key = match self.jobs.get(ws, id) {
            Some(old) => {
                if old.row.status == JobStatus::Queued {
                    self.due.remove(&(old.row.run_at, id, ws));
                }
                old.row.idempotency_key.clone()
            }
            None => None,
        };
        if row.row.status == JobStatus::Queued {
            self.due.insert((row.row.run_at, id, ws));
            self.wake = Some(self.wake.map_or(row.row.run_at, |d| d.min(row.row.run_at)));
        }
        self.job_keys
            .replace(ws, old_key, row.row.idempotency_key.clone(), id);
        self.jobs.put(row).row.clone()
    }

    /// The job if it is `Running` under `token`: `NotFound` if it does not exist in
    /// `ws` (as every write on a missing row), `LeaseLost` otherwise.
    fn leased(&self, ws: WorkspaceId, id: JobId, token: i64) -> Result<Fenced<Job>, StoreError> {
        let stored = self.jobs.find(ws, id)?;
        let held = stored.row.status == JobStatus::Running
            && stored.row.lease.as_ref().is_some_and(|l| l.token == token);
        if held {
            Ok(stored.clone())
        } else {
            Err(StoreError::lease_lost(JobId::ENTITY, id))
        }
    }

    /// Applies `change` to a job held under `token` and stores it.
    fn with_lease(
        &mut self,
        ws: WorkspaceId,
        id: JobId,
        token: i64,
        change: impl FnOnce(&mut Job),
    ) -> Result<Job, StoreError> {
        let mut row = self.leased(ws, id, token)?;
        row.row.lease = None;
        change(&mut row.row);
        Ok(self.put_job(row))
    }
}

/// An append that passed every check.
enum Append {
    /// An event with the key exists and is returned unchanged.
    Existing(Event),
    /// A new event to store.
    New,
}

/// Checks an append (see [`EventStore::append_event`]) without writing anything.
fn check_append(t: &Tables, event: &NewEvent) -> Result<Append, StoreError> {
    event.validate()?;
    let ws = event.workspace_id;
    let q = &t.queue;
    if let Some(existing) = q.event_by_key(ws, &event.idempotency_key) {
        return Ok(Append::Existing(existing.clone()));
    }
    if q.event_ids.contains_key(&(ws, event.id)) {
        return Err(StoreError::conflict(
            EventId::ENTITY,
            format!(
                "id {} is already used with another idempotency key",
                event.id
            ),
        ));
    }
    Ok(Append::New)
}

/// Stores a new event that passed [`check_append`] at the next position, unrouted.
fn put_event(t: &mut Tables, event: &NewEvent) -> Event {
    let ws = event.workspace_id;
    let q = &mut t.queue;
    q.last_position += 1;
    let position = q.last_position;
    q.event_ids.insert((ws, event.id), position);
    q.event_keys
        .entry(ws)
        .or_default()
        .insert(event.idempotency_key.clone(), position);
    let stored = Event::from_new(event.clone(), position);
    q.events.insert(position, stored.clone());
    q.unrouted.insert(position);
    stored
}

fn append_event(t: &mut Tables, event: &NewEvent) -> Result<Inserted<Event>, StoreError> {
    match check_append(t, event)? {
        Append::Existing(value) => Ok(Inserted {
            value,
            created: false,
        }),
        Append::New => Ok(Inserted {
            value: put_event(t, event),
            created: true,
        }),
    }
}

/// Appends the catalogue events of a change the caller has just made (or is about to
/// make, in the same locked section): built from the change's stored rows, so valid.
/// Unrouted, like every event appended without its jobs. An event whose key exists is
/// skipped (a retried change appends nothing twice); so is the astronomically unlikely
/// event whose fresh id is taken, rather than failing a change already written.
pub(crate) fn append_changes(t: &mut Tables, events: &[NewEvent]) {
    for event in events {
        if let Ok(Append::New) = check_append(t, event) {
            put_event(t, event);
        }
    }
}

/// Appends a batch all or none: every event is checked (against the log and against
/// the batch's earlier events) before the first is stored.
pub(crate) fn append_events(
    t: &mut Tables,
    events: &[NewEvent],
) -> Result<Vec<Inserted<Event>>, StoreError> {
    check_events(t, events)?;
    events.iter().map(|event| append_event(t, event)).collect()
}

/// The checks of [`append_events`], writing nothing.
pub(crate) fn check_events(t: &Tables, events: &[NewEvent]) -> Result<(), StoreError> {
    let mut new_keys: HashSet<(WorkspaceId, &str)> = HashSet::new();
    let mut new_ids: HashSet<(WorkspaceId, EventId)> = HashSet::new();
    for event in events {
        if let Append::New = check_append(t, event)? {
            let ws = event.workspace_id;
            if new_keys.insert((ws, event.idempotency_key.as_str()))
                && !new_ids.insert((ws, event.id))
            {
                return Err(StoreError::conflict(
                    EventId::ENTITY,
                    format!(
                        "id {} is used twice in the batch with different keys",
                        event.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The rules of [`JobStore::enqueue_job`] that need no stored row.
fn validate_job(job: &Job) -> Result<(), StoreError> {
    job.validate()?;
    if job.status != JobStatus::Queued {
        return Err(ValidationError::new("job.status", "a new job must be queued").into());
    }
    Ok(())
}

/// The row of a job being enqueued. A caller-supplied lease is stored as given, like
/// any column; its token seeds the fence.
fn new_job_row(job: &Job) -> Fenced<Job> {
    Fenced {
        fence: job.lease.as_ref().map_or(0, |l| l.token),
        row: job.clone(),
    }
}

/// The rules for jobs enqueued with events: valid, in the events' workspace, keyed.
fn check_event_jobs(ws: WorkspaceId, jobs: &[Job]) -> Result<(), StoreError> {
    for job in jobs {
        validate_job(job)?;
        if job.workspace_id != ws {
            return Err(
                ValidationError::new("job.workspace_id", "must be the event's workspace").into(),
            );
        }
        if job.idempotency_key.is_none() {
            return Err(ValidationError::new(
                "job.idempotency_key",
                "a job enqueued with an event needs one",
            )
            .into());
        }
    }
    Ok(())
}

/// Which of `jobs` (checked by [`check_event_jobs`]) are new: a key already stored,
/// or used by an earlier job of the batch, is an idempotent no-op; a new job's id
/// must be free (`Conflict`).
fn fresh_jobs<'a>(
    q: &QueueTables,
    ws: WorkspaceId,
    jobs: &'a [Job],
) -> Result<Vec<&'a Job>, StoreError> {
    let mut keys = HashSet::new();
    let mut fresh_ids = HashSet::new();
    let mut fresh = Vec::new();
    for job in jobs {
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        if q.job_keys.get(ws, key).is_some() || !keys.insert(key) {
            continue;
        }
        if q.jobs.contains(ws, job.id) || !fresh_ids.insert(job.id) {
            return Err(StoreError::conflict(
                JobId::ENTITY,
                format!("id {} is already used", job.id),
            ));
        }
        fresh.push(job);
    }
    Ok(fresh)
}

/// Enqueues `jobs` and marks `ids` routed: every check first, then every write.
fn mark_routed(
    t: &mut Tables,
    ws: WorkspaceId,
    ids: &[EventId],
    jobs: &[Job],
) -> Result<u64, StoreError> {
    check_event_jobs(ws, jobs)?;
    let fresh = fresh_jobs(&t.queue, ws, jobs)?;
    let q = &mut t.queue;
    for job in fresh {
        q.put_job(new_job_row(job));
    }
    let mut marked = 0;
    for id in ids {
        if let Some(position) = q.event_ids.get(&(ws, *id))
            && q.unrouted.remove(position)
        {
            marked += 1;
        }
    }
    Ok(marked)
}

/// Appends `event` and enqueues `jobs` with it: every check first, then every write.
fn append_event_with_jobs(
    t: &mut Tables,
    event: &NewEvent,
    jobs: &[Job],
) -> Result<Inserted<Event>, StoreError> {
    check_event_jobs(event.workspace_id, jobs)?;
    if let Append::Existing(value) = check_append(t, event)? {
        return Ok(Inserted {
            value,
            created: false,
        });
    }
    let fresh = fresh_jobs(&t.queue, event.workspace_id, jobs)?;
    let stored = put_event(t, event);
    // Its jobs go with it: the router must never route it a second time.
    t.queue.unrouted.remove(&stored.position);
    for job in fresh {
        t.queue.put_job(new_job_row(job));
    }
    Ok(Inserted {
        value: stored,
        created: true,
    })
}

fn enqueue_job(t: &mut Tables, job: &Job) -> Result<Inserted<Job>, StoreError> {
    validate_job(job)?;
    let ws = job.workspace_id;
    let q = &mut t.queue;
    if let Some(existing) = job
        .idempotency_key
        .as_deref()
        .and_then(|key| q.job_keys.get(ws, key))
        .and_then(|id| q.jobs.get(ws, id))
    {
        return Ok(Inserted {
            value: existing.row.clone(),
            created: false,
        });
    }
    let row = new_job_row(job);
    q.jobs.ensure_vacant(&row)?;
    Ok(Inserted {
        value: q.put_job(row),
        created: true,
    })
}

fn claim_jobs(t: &mut Tables, claim: &Claim) -> Result<Vec<Job>, StoreError> {
    claim.validate()?;
    let q = &mut t.queue;
    let jobs = &q.jobs;
    let picked: Vec<(JobId, WorkspaceId)> = q
        .due
        .iter()
        .take_while(|(run_at, _, _)| *run_at <= claim.now)
        .filter(|(_, _, ws)| claim.scope.covers(*ws))
        .filter(|(_, id, ws)| {
            claim.kinds.is_empty()
                || jobs
                    .get(*ws, *id)
                    .is_some_and(|j| claim.kinds.contains(&j.row.kind))
        })
        .take(limit(claim.limit))
        .map(|(_, id, ws)| (*id, *ws))
        .collect();
    let expires_at = deadline(claim.now, claim.lease_ttl)?;
    let mut claimed = Vec::with_capacity(picked.len());
    for (id, ws) in picked {
        let Some(stored) = q.jobs.get(ws, id) else {
            continue;
        };
        let mut row = stored.clone();
        row.fence = row.fence.saturating_add(1);
        let job = &mut row.row;
        job.status = JobStatus::Running;
        job.lease = Some(Lease {
            owner: claim.worker.clone(),
            token: row.fence,
            expires_at,
        });
        job.attempts = job.attempts.saturating_add(1);
        job.updated_at = claim.now;
        claimed.push(q.put_job(row));
    }
    Ok(claimed)
}

fn reap_jobs(t: &mut Tables, scope: Scope, now: DateTime<Utc>) -> u64 {
    let q = &mut t.queue;
    let cutoff = takeover_cutoff(now);
    let expired: Vec<Fenced<Job>> = q
        .jobs
        .in_scope(scope)
        .filter(|j| {
            j.row.status == JobStatus::Running
                && j.row.lease.as_ref().is_some_and(|l| l.expires_at <= cutoff)
        })
        .cloned()
        .collect();
    let mut reaped = 0;
    for mut row in expired {
        let job = &mut row.row;
        job.lease = None;
        job.updated_at = now;
        if job.attempts < job.max_attempts {
            job.status = JobStatus::Queued;
            job.run_at = now;
        } else {
            job.status = JobStatus::Dead;
            job.last_error = Some("lease expired".to_owned());
        }
        q.put_job(row);
        reaped += 1;
    }
    reaped
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Inserted<Event>>, StoreError> {
        self.with(|t| append_events(t, events))
    }

    async fn append_event_with_jobs(
        &self,
        event: &NewEvent,
        jobs: &[Job],
    ) -> Result<Inserted<Event>, StoreError> {
        self.with(|t| append_event_with_jobs(t, event, jobs))
    }

    async fn get_event(&self, workspace_id: WorkspaceId, id: EventId) -> Result<Event, StoreError> {
        self.with(|t| {
            let q = &t.queue;
            q.event_ids
                .get(&(workspace_id, id))
                .and_then(|pos| q.events.get(pos))
                .cloned()
                .ok_or_else(|| StoreError::not_found(EventId::ENTITY, id))
        })
    }

    async fn list_events(
        &self,
        scope: Scope,
        after_position: i64,
        limit_rows: u32,
    ) -> Result<Vec<Event>, StoreError> {
        validate_limit(limit_rows)?;
        self.with(|t| {
            Ok(t.queue
                .events
                .range((
                    std::ops::Bound::Excluded(after_position),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, e)| e)
                .filter(|e| scope.covers(e.workspace_id))
                .take(limit(limit_rows))
                .cloned()
                .collect())
        })
    }

    async fn list_unrouted_events(
        &self,
        scope: Scope,
        limit_rows: u32,
    ) -> Result<Vec<Event>, StoreError> {
        validate_limit(limit_rows)?;
        self.with(|t| {
            let q = &t.queue;
            Ok(q.unrouted
                .iter()
                .filter_map(|pos| q.events.get(pos))
                .filter(|e| scope.covers(e.workspace_id))
                .take(limit(limit_rows))
                .cloned()
                .collect())
        })
    }

    async fn mark_events_routed(
        &self,
        workspace_id: WorkspaceId,
        event_ids: &[EventId],
        jobs: &[Job],
    ) -> Result<u64, StoreError> {
        self.with(|t| mark_routed(t, workspace_id, event_ids, jobs))
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn enqueue_job(&self, job: &Job) -> Result<Inserted<Job>, StoreError> {
        self.with(|t| enqueue_job(t, job))
    }

    async fn enqueue_jobs(&self, jobs: &[Job]) -> Result<Vec<Inserted<Job>>, StoreError> {
        self.with(|t| batch::enqueue_jobs(t, jobs))
    }

    async fn complete_jobs(
        &self,
        jobs: &[(WorkspaceId, JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        Ok(self.with(|t| batch::complete_jobs(t, jobs, now)))
    }

    async fn get_job(&self, workspace_id: WorkspaceId, id: JobId) -> Result<Job, StoreError> {
        self.with(|t| Ok(t.queue.jobs.find(workspace_id, id)?.row.clone()))
    }

    async fn list_jobs(
        &self,
        workspace_id: WorkspaceId,
        status: Option<JobStatus>,
        page: Page<JobId>,
    ) -> Result<Vec<Job>, StoreError> {
        self.with(|t| {
            let rows = t.queue.jobs.page(workspace_id, &page, |j| {
                status.is_none_or(|s| j.row.status == s)
            })?;
            Ok(rows.into_iter().map(|j| j.row.clone()).collect())
        })
    }

    async fn claim_jobs(&self, claim: &Claim) -> Result<Vec<Job>, StoreError> {
        self.with(|t| claim_jobs(t, claim))
    }

    async fn complete_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.with(|t| {
            t.queue.with_lease(workspace_id, id, lease_token, |job| {
                job.status = JobStatus::Succeeded;
                job.updated_at = now;
            })
        })
    }

    async fn retry_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<Job, StoreError> {
        self.with(|t| {
            t.queue.with_lease(workspace_id, id, lease_token, |job| {
                if job.attempts < job.max_attempts {
                    job.status = JobStatus::Queued;
                    job.run_at = retry_at;
                } else {
                    job.status = JobStatus::Dead;
                }
                job.last_error = Some(error.to_owned());
                // No "now" is given, so `updated_at` is left as the claim set it.
            })
        })
    }

    async fn dead_letter_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.with(|t| {
            t.queue.with_lease(workspace_id, id, lease_token, |job| {
                job.status = JobStatus::Dead;
                job.last_error = Some(reason.to_owned());
                job.updated_at = now;
            })
        })
    }

    async fn release_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.with(|t| {
            t.queue.with_lease(workspace_id, id, lease_token, |job| {
                job.status = JobStatus::Queued;
                job.run_at = now;
                job.attempts = job.attempts.saturating_sub(1).max(0);
                job.updated_at = now;
            })
        })
    }

    async fn reap_expired_jobs(&self, scope: Scope, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.with(|t| reap_jobs(t, scope, now)))
    }
}
