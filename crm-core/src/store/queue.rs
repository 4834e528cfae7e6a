//! Durable jobs and the event log.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{EventId, JobId, WorkspaceId};
use crate::model::{Event, Job, JobStatus, NewEvent};
use crate::store::{Claim, Inserted, Page, Scope};

/// The append-only event log.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). Events are never
/// changed. Every event has a position unique within the store; positions increase
/// within one append (and within one store write's events), and from one append to
/// any append that begins after it returned. Appends that overlap in time MUST NOT
/// wait on each other (unless they append the same key): a backend takes no lock
/// shared by all appenders, so overlapping appends may commit out of position order.
///
/// # Reading with a cursor
/// [`list_events`](Self::list_events) keeps this promise to every reader: **once it
/// has listed an event at position P, no event at or below P is ever listed later**
/// (that was not listed before). So a consumer that pages with the position of the
/// last event it was given sees every committed event exactly once, in position
/// order; a rolled-back append is never listed. To keep it, a backend lists only up
/// to a *settled* position (every append that drew a position at or below it has
/// ended) and holds back a committed event while an append with a lower position is
/// still in flight. The memory store appends under one lock, so every position is
/// settled at once; the PostgreSQL store waits briefly for its schema's appends in
/// flight and never for anything else (its crate docs say how).
#[async_trait]
pub trait EventStore: Send + Sync + Debug {
    /// Appends events, all or none: one answer per event, in order. Idempotent on
    /// (workspace, `idempotency_key`): an event whose key exists returns the existing
    /// event unchanged with `created: false`, atomically under concurrent appends;
    /// within the batch, as across calls, a repeated key creates the event once (its
    /// first occurrence) and answers the others with it, `created: false`. A reused id
    /// with a different key is `Conflict`. An empty batch answers an empty list. A
    /// backend should append in one round trip. The single-event form is
    /// [`EventStoreExt::append_event`](crate::store::EventStoreExt::append_event).
    /// The events are appended unrouted (see
    /// [`list_unrouted_events`](Self::list_unrouted_events)).
    async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Inserted<Event>>, StoreError>;

    /// Appends an event and enqueues the jobs it triggers, atomically: when the event is
    /// created, every job is enqueued with it (each idempotent on its key, as by
    /// [`JobStore::enqueue_job`]); when the event already existed (same idempotency key),
    /// nothing is enqueued and `created` is `false`. Idempotency and conflicts as in
    /// [`append_events`](Self::append_events). Every job must belong to the
    /// event's workspace and carry an idempotency key (`Invalid`), so a retried append
    /// never doubles work. The event is routed: it is never listed by
    /// [`list_unrouted_events`](Self::list_unrouted_events).
    async fn append_event_with_jobs(
        &self,
        event: &NewEvent,
        jobs: &[Job],
    ) -> Result<Inserted<Event>, StoreError>;

    /// The event, or `NotFound`.
    async fn get_event(&self, workspace_id: WorkspaceId, id: EventId) -> Result<Event, StoreError>;

    /// Events in `scope` with a position greater than `after_position`, ascending by
    /// position, at most `limit` (1 to 1000, else `Invalid`), and only up to a settled
    /// position (see the trait's "Reading with a cursor"): a later call never lists an
    /// event at or below the last one this call listed. Feeds consumers that remember
    /// the position of the last event they were given (0 to start). An event held
    /// back because an append with a lower position is still in flight comes with a
    /// later call; a caller that appended and then lists sees its own events, unless
    /// such an append stays in flight for longer than the backend waits.
    async fn list_events(
        &self,
        scope: Scope,
        after_position: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Events appended without their jobs, oldest (lowest position) first: those the
    /// stores append with their own state changes and those of `append_events`. An
    /// event appended by `append_event_with_jobs` is routed already and never listed.
    async fn list_unrouted_events(
        &self,
        scope: Scope,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Enqueues `jobs` (a job whose idempotency key exists already is skipped, not an
    /// error) and marks `event_ids` routed, atomically: after it returns, none of them
    /// is listed by `list_unrouted_events`. Ids of unknown or already routed events are
    /// ignored. Returns how many events it marked.
    ///
    /// As in [`append_event_with_jobs`](Self::append_event_with_jobs), every job must
    /// belong to `workspace_id` and carry an idempotency key (`Invalid`, nothing
    /// written), and a new job's id already used is `Conflict`.
    async fn mark_events_routed(
        &self,
        workspace_id: WorkspaceId,
        event_ids: &[EventId],
        jobs: &[Job],
    ) -> Result<u64, StoreError>;
}

/// The durable job queue.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). Lease-checked
/// methods return `LeaseLost` unless the job is `Running` with exactly the given fencing
/// token; the token, not the clock, decides.
///
/// # Clock skew
/// Workers whose clocks differ by up to [`MAX_CLOCK_SKEW`](crate::store::MAX_CLOCK_SKEW)
/// MUST never hold the same job at once. A claim's lease runs until the claimer's
/// `now + lease_ttl`; a `Running` job is never claimable, and
/// [`reap_expired_jobs`](Self::reap_expired_jobs) MUST NOT requeue it before the
/// reaper's `now` reaches `expires_at + MAX_CLOCK_SKEW`, so a reaper whose clock runs
/// ahead cannot free a lease the claimer still holds by its own clock. Expiry is judged
/// by the caller's `now`, never by the backend's clock.
#[async_trait]
pub trait JobStore: Send + Sync + Debug {
    /// Enqueues a `Queued` job. With an idempotency key it is idempotent on
    /// (workspace, key): an existing job with the key is returned unchanged with
    /// `created: false`. A reused id is `Conflict`.
    async fn enqueue_job(&self, job: &Job) -> Result<Inserted<Job>, StoreError>;

    /// Enqueues a batch of `Queued` jobs, all or none: one answer per job, in order.
    /// The plain bulk form of [`enqueue_job`](Self::enqueue_job) for hosts: no event is
    /// appended, and the idempotency key stays optional per job. A job with a key
    /// whose job exists already answers that job unchanged with `created: false`;
    /// within the batch, as across calls, a repeated key enqueues its first job and
    /// answers the others with it, `created: false`. Jobs without a key are always
    /// created. An invalid or non-`Queued` job is `Invalid` and a reused id
    /// `Conflict`, and then nothing is written. An empty batch answers an empty list.
    /// A backend should insert in one round trip (plus one read when keys existed).
    async fn enqueue_jobs(&self, jobs: &[Job]) -> Result<Vec<Inserted<Job>>, StoreError>;

    /// The job, or `NotFound`.
    async fn get_job(&self, workspace_id: WorkspaceId, id: JobId) -> Result<Job, StoreError>;

    /// Jobs of the workspace, optionally with one status, ascending by id.
    async fn list_jobs(
        &self,
        workspace_id: WorkspaceId,
        status: Option<JobStatus>,
        page: Page<JobId>,
    ) -> Result<Vec<Job>, StoreError>;

    /// Claims up to `claim.limit` `Queued` jobs with `run_at <= claim.now` in
    /// `claim.scope` and of `claim.kinds` (all kinds when empty), earliest `run_at`
    /// first (ties by id). Each becomes `Running` with a lease owned by `claim.worker`
    /// until `now + lease_ttl`, a fencing token one greater than its previous one, and
    /// `attempts + 1`. MUST be atomic: concurrent claimers never receive the same job.
    async fn claim_jobs(&self, claim: &Claim) -> Result<Vec<Job>, StoreError>;

    /// Marks a running job `Succeeded`. Lease-checked.
    async fn complete_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Marks a batch of running jobs `Succeeded` at `now`: the batch form of
    /// [`complete_job`](Self::complete_job), for workers that complete several jobs at
    /// once. `jobs` lists (workspace, job id, lease token); each entry is lease-checked
    /// on its own, exactly as by `complete_job`, and answered in order: `Ok(())` when
    /// it was completed, else its error (`NotFound` for a job that does not exist in
    /// the workspace, `LeaseLost` unless it was `Running` under that token). Entries
    /// are applied as if one after another, so a job listed twice is completed by its
    /// first entry and the second answers `LeaseLost`. One entry's failure never
    /// affects another. The outer error is a failure of the whole call, whose writes
    /// are then unknown as for any failed store call; retrying it is safe, and answers
    /// `LeaseLost` for the entries the failed call did complete.
    /// An empty batch answers an empty list. A backend should write in one round trip
    /// (plus one read when some entry missed).
    async fn complete_jobs(
        &self,
        jobs: &[(WorkspaceId, JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// Records a failed attempt. If `attempts < max_attempts` the job goes back to
    /// `Queued` at `retry_at`; otherwise it goes `Dead`. `error` is stored in
    /// `last_error` either way. Lease-checked.
    async fn retry_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<Job, StoreError>;

    /// Moves a running job to `Dead` with `reason` (a permanent failure). Lease-checked.
    async fn dead_letter_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Gives a running job back unprocessed (graceful shutdown): `Queued`, due at `now`,
    /// and the claim's attempt is not counted. Lease-checked.
    async fn release_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Every `Running` job in `scope` whose lease expired at or before
    /// `now - MAX_CLOCK_SKEW` (see the trait's "Clock skew") goes back to
    /// `Queued` (due at `now`), or `Dead` with reason "lease expired" when it has no
    /// attempts left. Returns how many were reaped, requeued and dead together.
    async fn reap_expired_jobs(&self, scope: Scope, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
