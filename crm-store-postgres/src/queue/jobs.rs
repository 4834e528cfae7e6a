//! The durable job queue (`JobStore`); jobs enqueued with events are in the parent
//! module.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{JobId, WorkspaceId};
use crm_core::model::{Job, JobStatus};
use crm_core::store::takeover_cutoff;
use crm_core::store::{Claim, Inserted, JobStore, Page, Scope};

use super::{JOB, bind_job_batch, validate_new_job};
use crate::PostgresStore;
use crate::error::{db, invalid, lease_miss};
use crate::page::{fetch_status_page, status_page_sql};
use crate::rows::{IntoEntity, JobRow, entities};

const JOB_EXISTS: &str = "SELECT 1::bigint FROM jobs WHERE workspace_id = $1 AND id = $2";

/// The claim: lock due queued jobs of the wanted kinds (skipping rows another claimer
/// holds), earliest first, and lease them in the same statement. It runs in the
/// function of migration 0020, whose plan reads the claim index in order whatever the
/// table's statistics say (`$6` is the workspace, `NULL` for all).
const CLAIM_JOBS: &str = "SELECT * FROM crm_claim_jobs($1, $2, $3, $4, $5, $6)";

/// Lease-checked job updates share this condition: `$1` workspace, `$2` id, `$3` token.
macro_rules! leased_job_sql {
    ($set:literal) => {
        concat!(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, ",
            $set,
            " WHERE workspace_id = $1 AND id = $2 AND status = 'running' AND lease_token = $3
             RETURNING *"
        )
    };
}
const COMPLETE_JOB: &str = leased_job_sql!("status = 'succeeded', updated_at = $4");
const RETRY_JOB: &str = leased_job_sql!(
    "status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
     run_at = CASE WHEN attempts < max_attempts THEN $4 ELSE run_at END,
     last_error = $5"
);
const DEAD_LETTER_JOB: &str = leased_job_sql!("status = 'dead', last_error = $4, updated_at = $5");
const RELEASE_JOB: &str = leased_job_sql!(
    "status = 'queued', run_at = $4, attempts = greatest(attempts - 1, 0), updated_at = $4"
);

/// A bulk enqueue in one statement (the columns of `bind_job_batch`, `$1..$15`): each
/// job idempotent on its key as in `enqueue_job`, a key repeated within the batch
/// keeping its first job; answers the rows it inserted.
const ENQUEUE_JOBS: &str = "
    INSERT INTO jobs (workspace_id, id, kind, payload, idempotency_key, status, attempts,
        max_attempts, run_at, lease_owner, lease_token, lease_expires_at, last_error,
        created_at, updated_at)
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[],
        $6::text[], $7::int4[], $8::int4[], $9::timestamptz[], $10::text[], $11::int8[],
        $12::timestamptz[], $13::text[], $14::timestamptz[], $15::timestamptz[])
    ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING *";

/// The stored jobs of (workspace, key) pairs.
const JOBS_BY_KEY: &str = "
    SELECT j.* FROM jobs j
    JOIN unnest($1::uuid[], $2::text[]) AS k(workspace_id, idempotency_key)
      ON j.workspace_id = k.workspace_id AND j.idempotency_key = k.idempotency_key";

/// Completes a batch in one statement: each (workspace, id, token) entry under the
/// same lease check as [`COMPLETE_JOB`]; answers the jobs it completed.
const COMPLETE_JOBS: &str = "
    UPDATE jobs j
    SET status = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
    FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS d(workspace_id, id, lease_token)
    WHERE j.workspace_id = d.workspace_id AND j.id = d.id AND j.status = 'running'
      AND j.lease_token = d.lease_token
    RETURNING j.workspace_id, j.id, j.lease_token";

/// Which of (workspace, id) pairs exist: tells `NotFound` from `LeaseLost`.
const JOBS_EXIST: &str = "
    SELECT j.workspace_id, j.id FROM jobs j
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(workspace_id, id)
      ON j.workspace_id = k.workspace_id AND j.id = k.id";

type PgQueryAs<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, JobRow, sqlx::postgres::PgArguments>;

impl PostgresStore {
    /// Runs a lease-checked job update; no row back means `NotFound` or `LeaseLost`.
    async fn leased_job(
        &self,
        q: PgQueryAs<'_>,
        workspace_id: WorkspaceId,
        id: JobId,
    ) -> Result<Job, StoreError> {
        match q.fetch_optional(&self.pool).await.map_err(db(JOB))? {
            Some(row) => row.into_entity(),
            None => Err(lease_miss(&self.pool, JOB_EXISTS, JOB, workspace_id, id.as_uuid()).await),
        }
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn enqueue_job(&self, job: &Job) -> Result<Inserted<Job>, StoreError> {
        validate_new_job(job)?;
        let lease = job.lease.as_ref();
        let inserted = sqlx::query_as::<_, JobRow>(
            "INSERT INTO jobs (workspace_id, id, kind, payload, idempotency_key, status,
                 attempts, max_attempts, run_at, lease_owner, lease_token, lease_expires_at,
                 last_error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL
             DO NOTHING
             RETURNING *",
        )
        .bind(job.workspace_id.as_uuid())
        .bind(job.id.as_uuid())
        .bind(job.kind.clone())
        .bind(job.payload.clone())
        .bind(job.idempotency_key.clone())
        .bind(job.status.as_str())
        .bind(job.attempts)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(lease.map(|l| l.owner.clone()))
        .bind(lease.map_or(0, |l| l.token))
        .bind(lease.map(|l| l.expires_at))
        .bind(job.last_error.clone())
        .bind(job.created_at)
        .bind(job.updated_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(JOB))?;
        if let Some(row) = inserted {
            return Ok(Inserted {
                value: row.into_entity()?,
                created: true,
            });
        }
        // Only a key can make the insert do nothing; jobs are never deleted, so the job
        // holding it is still there.
        let existing = sqlx::query_as::<_, JobRow>(
            "SELECT * FROM jobs WHERE workspace_id = $1 AND idempotency_key = $2",
        )
        .bind(job.workspace_id.as_uuid())
        .bind(job.idempotency_key.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(db(JOB))?;
        Ok(Inserted {
            value: existing.into_entity()?,
            created: false,
        })
    }

    async fn enqueue_jobs(&self, jobs: &[Job]) -> Result<Vec<Inserted<Job>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        for job in jobs {
            validate_new_job(job)?;
        }
        let rows = bind_job_batch(sqlx::query(ENQUEUE_JOBS), jobs)
            .fetch_all(&self.pool)
            .await
            .map_err(db(JOB))?;
        let mut inserted: HashMap<(WorkspaceId, JobId), Job> = HashMap::with_capacity(rows.len());
        for row in rows {
            let job = <JobRow as sqlx::FromRow<_>>::from_row(&row)
                .map_err(db(JOB))?
                .into_entity()?;
            inserted.insert((job.workspace_id, job.id), job);
        }
        let mut answers: Vec<Option<Inserted<Job>>> = jobs
            .iter()
            .map(|j| {
                inserted
                    .remove(&(j.workspace_id, j.id))
                    .map(|value| Inserted {
                        value,
                        created: true,
                    })
            })
            .collect();
        let skipped: Vec<(uuid::Uuid, &str)> = jobs
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .filter_map(|(j, _)| Some((j.workspace_id.as_uuid(), j.idempotency_key.as_deref()?)))
            .collect();
        if !skipped.is_empty() {
            // Only a key can make a row do nothing; jobs are never deleted, so the job
            // holding it is still there.
            let rows = sqlx::query_as::<_, JobRow>(JOBS_BY_KEY)
                .bind(skipped.iter().map(|(ws, _)| *ws).collect::<Vec<_>>())
                .bind(skipped.iter().map(|(_, key)| *key).collect::<Vec<_>>())
                .fetch_all(&self.pool)
                .await
                .map_err(db(JOB))?;
            let mut by_key: HashMap<(WorkspaceId, String), Job> = HashMap::new();
            for row in rows {
                let job = row.into_entity()?;
                if let Some(key) = job.idempotency_key.clone() {
                    by_key.insert((job.workspace_id, key), job);
                }
            }
            for (job, answer) in jobs.iter().zip(answers.iter_mut()) {
                if answer.is_none()
                    && let Some(key) = job.idempotency_key.clone()
                {
                    *answer = by_key
                        .get(&(job.workspace_id, key))
                        .cloned()
                        .map(|value| Inserted {
                            value,
                            created: false,
                        });
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| invalid("jobs", "an enqueued job could not be read back")))
            .collect()
    }

    async fn complete_jobs(
        &self,
        jobs: &[(WorkspaceId, JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let done: Vec<(uuid::Uuid, uuid::Uuid, i64)> = sqlx::query_as(COMPLETE_JOBS)
            .bind(
                jobs.iter()
                    .map(|(ws, _, _)| ws.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|(_, id, _)| id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(jobs.iter().map(|(_, _, token)| *token).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(db(JOB))?;
        // Each completed job answers `Ok` at its first entry with the token it held; any
        // other entry of the same job finds it no longer running, as if applied after.
        let mut done: HashSet<(uuid::Uuid, uuid::Uuid, i64)> = done.into_iter().collect();
        let completed: Vec<bool> = jobs
            .iter()
            .map(|(ws, id, token)| done.remove(&(ws.as_uuid(), id.as_uuid(), *token)))
            .collect();
        let missed: Vec<&(WorkspaceId, JobId, i64)> = jobs
            .iter()
            .zip(&completed)
            .filter(|(_, ok)| !**ok)
            .map(|(entry, _)| entry)
            .collect();
        let existing: HashSet<(uuid::Uuid, uuid::Uuid)> = if missed.is_empty() {
            HashSet::new()
        } else {
            let rows: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(JOBS_EXIST)
                .bind(
                    missed
                        .iter()
                        .map(|(ws, _, _)| ws.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    missed
                        .iter()
                        .map(|(_, id, _)| id.as_uuid())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db(JOB))?;
            rows.into_iter().collect()
        };
        Ok(jobs
            .iter()
            .zip(completed)
            .map(|((ws, id, _), ok)| {
                if ok {
                    Ok(())
                } else if existing.contains(&(ws.as_uuid(), id.as_uuid())) {
                    Err(StoreError::lease_lost(JOB, id))
                } else {
                    Err(StoreError::not_found(JOB, id))
                }
            })
            .collect())
    }

    async fn get_job(&self, workspace_id: WorkspaceId, id: JobId) -> Result<Job, StoreError> {
        sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(JOB))?
            .ok_or_else(|| StoreError::not_found(JOB, id))?
            .into_entity()
    }

    async fn list_jobs(
        &self,
        workspace_id: WorkspaceId,
        status: Option<JobStatus>,
        page: Page<JobId>,
    ) -> Result<Vec<Job>, StoreError> {
        page.validate()?;
        fetch_status_page::<JobRow>(
            &self.pool,
            status_page_sql!("jobs"),
            workspace_id,
            status.map(|s| s.as_str()),
            page.after.map(|id| id.as_uuid()),
            page.limit,
            JOB,
        )
        .await
    }

    async fn claim_jobs(&self, claim: &Claim) -> Result<Vec<Job>, StoreError> {
        claim.validate()?;
        let expires_at = claim
            .now
            .checked_add_signed(claim.lease_ttl)
            .ok_or_else(|| invalid("claim.lease_ttl", "is too long"))?;
        let rows = sqlx::query_as::<_, JobRow>(CLAIM_JOBS)
            .bind(claim.worker.as_str())
            .bind(expires_at)
            .bind(claim.now)
            .bind(i64::from(claim.limit))
            .bind(claim.kinds.clone())
            .bind(claim.scope.workspace().map(|ws| ws.as_uuid()))
            .fetch_all(&self.pool)
            .await
            .map_err(db(JOB))?;
        let mut claimed = entities(rows)?;
        claimed.sort_by_key(|j| (j.run_at, j.id));
        Ok(claimed)
    }

    async fn complete_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let q = sqlx::query_as(COMPLETE_JOB)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(now);
        self.leased_job(q, workspace_id, id).await
    }

    async fn retry_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<Job, StoreError> {
        let q = sqlx::query_as(RETRY_JOB)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(retry_at)
            .bind(error.to_owned());
        self.leased_job(q, workspace_id, id).await
    }

    async fn dead_letter_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let q = sqlx::query_as(DEAD_LETTER_JOB)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(reason.to_owned())
            .bind(now);
        self.leased_job(q, workspace_id, id).await
    }

    async fn release_job(
        &self,
        workspace_id: WorkspaceId,
        id: JobId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let q = sqlx::query_as(RELEASE_JOB)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(lease_token)
            .bind(now);
        self.leased_job(q, workspace_id, id).await
    }

    async fn reap_expired_jobs(&self, scope: Scope, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs
             SET status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
                 run_at = CASE WHEN attempts < max_attempts THEN $1 ELSE run_at END,
                 last_error = CASE WHEN attempts < max_attempts THEN last_error
                                   ELSE 'lease expired' END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE status = 'running' AND lease_expires_at <= $3
               AND ($2::uuid IS NULL OR workspace_id = $2)",
        )
        .bind(now)
        .bind(scope.workspace().map(|ws| ws.as_uuid()))
        .bind(takeover_cutoff(now))
        .execute(&self.pool)
        .await
        .map_err(db(JOB))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod plan_tests {
    //! The claim's cost does not grow with the queue, even on a table never analyzed
    //! (a fresh table, a server with autovacuum off), where the planner would
    //! otherwise read and sort every queued job on each claim.

    use super::CLAIM_JOBS;
    use crate::testing::fresh_store;

    /// 40,000 queued jobs in one workspace, and no statistics.
    const POPULATE: &str = "
        INSERT INTO jobs (workspace_id, id, kind, payload, status, attempts, max_attempts,
            run_at, lease_token, created_at, updated_at)
        SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(), 'k', '{}',
            'queued', 0, 5, now() - interval '1 minute', 0, now(), now()
        FROM generate_series(1, 40000) n;";

    /// Shared buffers one claim of 10 jobs touches, after a first claim has warmed the
    /// function's plan and the catalog caches.
    async fn buffers(workspace: Option<uuid::Uuid>) -> i64 {
        let store = fresh_store().await;
        sqlx::raw_sql(POPULATE).execute(store.pool()).await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let now = crm_core::Clock::now(&crm_core::SystemClock);
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CLAIM_JOBS}");
        let mut hits = 0;
        for _ in 0..2 {
            let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain.clone()))
                .bind("w")
                .bind(now + chrono::Duration::minutes(5))
                .bind(now)
                .bind(10_i64)
                .bind(vec!["k".to_owned()])
                .bind(workspace)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            hits = plan[0]["Plan"]["Shared Hit Blocks"].as_i64().unwrap()
                + plan[0]["Plan"]["Shared Read Blocks"].as_i64().unwrap();
        }
        hits
    }

    #[tokio::test]
    async fn a_claim_reads_the_claim_index_in_order_without_statistics() {
        // Reading the whole queue touches every heap page of it (about 800 here).
        for workspace in [None, Some(uuid::Uuid::from_u128(1))] {
            let hits = buffers(workspace).await;
            assert!(hits < 300, "{workspace:?}: a claim touched {hits} buffers");
        }
    }
}
