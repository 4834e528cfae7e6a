//! The event log and its routing; the durable job queue in [`jobs`]. Appends take no
//! lock; how a paging reader still gets every event once, in order, is in
//! [`log_order`].

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::ids::{EventId, WorkspaceId};
use crm_core::model::{Event, Job, JobStatus, NewEvent};
use crm_core::store::{EventStore, Inserted, Scope, validate_limit};

use sqlx::PgConnection;
use sqlx::types::Json;

use crate::PostgresStore;
use crate::error::{db, invalid};
use crate::rows::{EventRow, IntoEntity, entities};

mod jobs;
mod log_order;
pub(crate) use log_order::Settled;
#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod plan_tests;

const EVENT: &str = "event";
const JOB: &str = "job";

/// An event appended with its jobs is routed at once: its jobs go in the same
/// transaction, so the router never sees it.
const APPEND_EVENT: &str = "
    INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
        occurred_at, routed)
    VALUES ($1, $2, $3, $4, $5, $6, $7, true)
    ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
    RETURNING *";

/// A batch of events in one statement; rows whose key already exists (or repeats an
/// earlier row of the batch) are skipped.
macro_rules! insert_events_sql {
    () => {
        "INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
             occurred_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[],
             $6::text[], $7::timestamptz[])
         ON CONFLICT (workspace_id, idempotency_key) DO NOTHING"
    };
}
const APPEND_EVENTS: &str = concat!(insert_events_sql!(), " RETURNING *");

/// A batch insert without an answer, for the appends that go with a state change: the
/// store's own writes cost one round trip for their events.
const INSERT_EVENTS: &str = insert_events_sql!();

/// The router's listing: unrouted events, lowest position first, through the partial
/// index `events_unrouted_idx` (whose predicate `NOT routed` each query repeats).
const UNROUTED_ALL: &str = "
    SELECT * FROM events WHERE NOT routed AND $1::uuid IS NULL ORDER BY position LIMIT $2";
const UNROUTED_WORKSPACE: &str = "
    SELECT * FROM events WHERE NOT routed AND workspace_id = $1 ORDER BY position LIMIT $2";

/// Binds a batch of events to [`APPEND_EVENTS`] or [`INSERT_EVENTS`].
macro_rules! bind_events {
    ($query:expr, $events:expr) => {
        $query
            .bind(
                $events
                    .iter()
                    .map(|e| e.workspace_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind($events.iter().map(|e| e.id.as_uuid()).collect::<Vec<_>>())
            .bind($events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
            .bind(
                $events
                    .iter()
                    .map(|e| e.subject.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind($events.iter().map(|e| Json(&e.payload)).collect::<Vec<_>>())
            .bind(
                $events
                    .iter()
                    .map(|e| e.idempotency_key.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind($events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    };
}

/// Appends events inside the caller's transaction, answering nothing (see
/// [`EventStore::append_events`] for the rules): every store write appends its
/// events (built by `crm_core::events`) this way, unrouted, in the write's
/// transaction. One statement, whatever the number of events.
pub(crate) async fn insert_events_in(
    conn: &mut PgConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    for event in events {
        event.validate()?;
    }
    bind_events!(sqlx::query(INSERT_EVENTS), events)
        .execute(&mut *conn)
        .await
        .map_err(db(EVENT))?;
    Ok(())
}

/// The stored events of (workspace, key) pairs.
const EVENTS_BY_KEY: &str = "
    SELECT e.* FROM events e
    JOIN unnest($1::uuid[], $2::text[]) AS k(workspace_id, idempotency_key)
      ON e.workspace_id = k.workspace_id AND e.idempotency_key = k.idempotency_key";

/// Enqueues a batch of new jobs in one statement, one array per column, each job
/// idempotent on its key as in `enqueue_job` (a key repeated within the batch keeps
/// its first job).
const ENQUEUE_JOB_BATCH: &str = "
    INSERT INTO jobs (workspace_id, id, kind, payload, idempotency_key, status, attempts,
        max_attempts, run_at, lease_owner, lease_token, lease_expires_at, last_error,
        created_at, updated_at)
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[],
        $6::text[], $7::int4[], $8::int4[], $9::timestamptz[], $10::text[], $11::int8[],
        $12::timestamptz[], $13::text[], $14::timestamptz[], $15::timestamptz[])
    ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING";

/// An event row and whether this call created it.
struct Appended {
    value: EventRow,
    created: bool,
}

/// Appends `event` within `tx`; an existing event of the same key is returned instead.
async fn append_one(tx: &mut PgConnection, event: &NewEvent) -> Result<Appended, StoreError> {
    let inserted = sqlx::query_as::<_, EventRow>(APPEND_EVENT)
        .bind(event.workspace_id.as_uuid())
        .bind(event.id.as_uuid())
        .bind(event.kind.clone())
        .bind(event.subject.clone())
        .bind(event.payload.clone())
        .bind(event.idempotency_key.clone())
        .bind(event.occurred_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(EVENT))?;
    if let Some(value) = inserted {
        return Ok(Appended {
            value,
            created: true,
        });
    }
    let value = sqlx::query_as::<_, EventRow>(
        "SELECT * FROM events WHERE workspace_id = $1 AND idempotency_key = $2",
    )
    .bind(event.workspace_id.as_uuid())
    .bind(event.idempotency_key.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(db(EVENT))?;
    Ok(Appended {
        value,
        created: false,
    })
}

/// Enqueues `$3..` (the jobs, as in [`ENQUEUE_JOB_BATCH`]) and marks the events `$2`
/// of workspace `$1` routed, in one statement, so the two cannot come apart. Only
/// unrouted rows are marked, so the count is of events this call routed.
const MARK_ROUTED: &str = "
    WITH enqueued AS (
        INSERT INTO jobs (workspace_id, id, kind, payload, idempotency_key, status,
            attempts, max_attempts, run_at, lease_owner, lease_token, lease_expires_at,
            last_error, created_at, updated_at)
        SELECT * FROM UNNEST($3::uuid[], $4::uuid[], $5::text[], $6::jsonb[], $7::text[],
            $8::text[], $9::int4[], $10::int4[], $11::timestamptz[], $12::text[],
            $13::int8[], $14::timestamptz[], $15::text[], $16::timestamptz[],
            $17::timestamptz[])
        ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    )
    UPDATE events SET routed = true
    WHERE workspace_id = $1 AND id = ANY($2) AND NOT routed";

/// The rules for jobs enqueued with events: valid, queued, in the events' workspace,
/// and keyed, so a retried call adds none.
fn check_event_jobs(workspace_id: WorkspaceId, jobs: &[Job]) -> Result<(), StoreError> {
    for job in jobs {
        validate_new_job(job)?;
        if job.workspace_id != workspace_id {
            return Err(invalid("job.workspace_id", "must be the event's workspace"));
        }
        if job.idempotency_key.is_none() {
            return Err(invalid(
                "job.idempotency_key",
                "a job enqueued with an event needs one, so a retried append adds none",
            ));
        }
    }
    Ok(())
}

/// The rules of a job being enqueued: `Job::validate`, and queued.
fn validate_new_job(job: &Job) -> Result<(), StoreError> {
    job.validate()?;
    if job.status == JobStatus::Queued {
        Ok(())
    } else {
        Err(invalid("job.status", "a new job must be queued"))
    }
}

/// Binds `jobs` as the column arrays of [`ENQUEUE_JOB_BATCH`] (`$1..$15`) or of
/// [`MARK_ROUTED`] (`$3..$17`).
fn bind_job_batch<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    jobs: &[Job],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn column<T>(jobs: &[Job], f: impl Fn(&Job) -> T) -> Vec<T> {
        jobs.iter().map(f).collect()
    }
    q.bind(column(jobs, |j| j.workspace_id.as_uuid()))
        .bind(column(jobs, |j| j.id.as_uuid()))
        .bind(column(jobs, |j| j.kind.clone()))
        .bind(column(jobs, |j| j.payload.clone()))
        .bind(column(jobs, |j| j.idempotency_key.clone()))
        .bind(column(jobs, |j| j.status.as_str()))
        .bind(column(jobs, |j| j.attempts))
        .bind(column(jobs, |j| j.max_attempts))
        .bind(column(jobs, |j| j.run_at))
        .bind(column(jobs, |j| j.lease.as_ref().map(|l| l.owner.clone())))
        .bind(column(jobs, |j| j.lease.as_ref().map_or(0, |l| l.token)))
        .bind(column(jobs, |j| j.lease.as_ref().map(|l| l.expires_at)))
        .bind(column(jobs, |j| j.last_error.clone()))
        .bind(column(jobs, |j| j.created_at))
        .bind(column(jobs, |j| j.updated_at))
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Inserted<Event>>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for event in events {
            event.validate()?;
        }
        let mut tx = self.pool.begin().await.map_err(db(EVENT))?;
        let created = bind_events!(sqlx::query_as::<_, EventRow>(APPEND_EVENTS), events)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(EVENT))?;
        let mut stored: HashMap<(WorkspaceId, String), Event> = HashMap::new();
        // Keys this statement created; each answers `created: true` once, at its first
        // occurrence in the batch.
        let mut fresh: HashSet<(WorkspaceId, String)> = HashSet::new();
        for row in created {
            let event = row.into_entity()?;
            let key = (event.workspace_id, event.idempotency_key.clone());
            fresh.insert(key.clone());
            stored.insert(key, event);
        }
        let missing: Vec<&NewEvent> = events
            .iter()
            .filter(|e| !stored.contains_key(&(e.workspace_id, e.idempotency_key.clone())))
            .collect();
        if !missing.is_empty() {
            let rows = sqlx::query_as::<_, EventRow>(EVENTS_BY_KEY)
                .bind(
                    missing
                        .iter()
                        .map(|e| e.workspace_id.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    missing
                        .iter()
                        .map(|e| e.idempotency_key.as_str())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(db(EVENT))?;
            for row in rows {
                let event = row.into_entity()?;
                stored.insert((event.workspace_id, event.idempotency_key.clone()), event);
            }
        }
        tx.commit().await.map_err(db(EVENT))?;
        events
            .iter()
            .map(|e| {
                let key = (e.workspace_id, e.idempotency_key.clone());
                let value = stored
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| invalid("events", "an appended event could not be read back"))?;
                Ok(Inserted {
                    created: fresh.remove(&key),
                    value,
                })
            })
            .collect()
    }

    async fn append_event_with_jobs(
        &self,
        event: &NewEvent,
        jobs: &[Job],
    ) -> Result<Inserted<Event>, StoreError> {
        event.validate()?;
        check_event_jobs(event.workspace_id, jobs)?;
        let mut tx = self.pool.begin().await.map_err(db(EVENT))?;
        let appended = append_one(&mut tx, event).await?;
        if appended.created && !jobs.is_empty() {
            bind_job_batch(sqlx::query(ENQUEUE_JOB_BATCH), jobs)
                .execute(&mut *tx)
                .await
                .map_err(db(JOB))?;
        }
        tx.commit().await.map_err(db(EVENT))?;
        Ok(Inserted {
            value: appended.value.into_entity()?,
            created: appended.created,
        })
    }

    async fn get_event(&self, workspace_id: WorkspaceId, id: EventId) -> Result<Event, StoreError> {
        sqlx::query_as::<_, EventRow>("SELECT * FROM events WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(EVENT))?
            .ok_or_else(|| StoreError::not_found(EVENT, id))?
            .into_entity()
    }

    async fn list_events(
        &self,
        scope: Scope,
        after_position: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        validate_limit(limit)?;
        // Only up to a settled position, read in a statement after it was found (see
        // `log_order`): nothing listed can be overtaken by a late commit.
        let settled = log_order::settled_position(&self.pool, &self.settled).await?;
        if settled <= after_position {
            return Ok(Vec::new());
        }
        let rows = sqlx::query_as::<_, EventRow>(
            "SELECT * FROM events
             WHERE position > $1 AND position <= $4
               AND ($2::uuid IS NULL OR workspace_id = $2)
             ORDER BY position LIMIT $3",
        )
        .bind(after_position)
        .bind(scope.workspace().map(|ws| ws.as_uuid()))
        .bind(i64::from(limit))
        .bind(settled)
        .fetch_all(&self.pool)
        .await
        .map_err(db(EVENT))?;
        entities(rows)
    }

    async fn list_unrouted_events(
        &self,
        scope: Scope,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        validate_limit(limit)?;
        let sql = match scope {
            Scope::All => UNROUTED_ALL,
            Scope::Workspace(_) => UNROUTED_WORKSPACE,
        };
        let rows = sqlx::query_as::<_, EventRow>(sql)
            .bind(scope.workspace().map(|ws| ws.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db(EVENT))?;
        entities(rows)
    }

    async fn mark_events_routed(
        &self,
        workspace_id: WorkspaceId,
        event_ids: &[EventId],
        jobs: &[Job],
    ) -> Result<u64, StoreError> {
        check_event_jobs(workspace_id, jobs)?;
        if event_ids.is_empty() && jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<_> = event_ids.iter().map(|id| id.as_uuid()).collect();
        let q = sqlx::query(MARK_ROUTED)
            .bind(workspace_id.as_uuid())
            .bind(ids);
        let done = bind_job_batch(q, jobs)
            .execute(&self.pool)
            .await
            .map_err(db(JOB))?;
        Ok(done.rows_affected())
    }
}
