//! The batch forms of the job queue: bulk enqueue and batched completion.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{JobId, WorkspaceId};
use crm_core::model::{Job, JobStatus};
use crm_core::store::Inserted;

use super::{new_job_row, validate_job};
use crate::Tables;

/// What one job of a bulk enqueue becomes, decided before anything is written.
enum Plan {
    /// A new job to store.
    New,
    /// A job with its key is stored already (this id): answered unchanged.
    Existing(JobId),
    /// An earlier job of the batch has its key: answered as that job.
    SameAs(usize),
}

/// [`JobStore::enqueue_jobs`](crm_core::store::JobStore::enqueue_jobs): every check
/// first, then every write, so a refused batch writes nothing.
pub(super) fn enqueue_jobs(t: &mut Tables, jobs: &[Job]) -> Result<Vec<Inserted<Job>>, StoreError> {
    for job in jobs {
        validate_job(job)?;
    }
    let q = &t.queue;
    let mut first_of_key: HashMap<(WorkspaceId, &str), usize> = HashMap::new();
    let mut new_ids: HashSet<(WorkspaceId, JobId)> = HashSet::new();
    let mut plans = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let ws = job.workspace_id;
        if let Some(key) = job.idempotency_key.as_deref() {
            if let Some(stored) = q
                .job_keys
                .get(ws, key)
                .filter(|id| q.jobs.contains(ws, *id))
            {
                plans.push(Plan::Existing(stored));
                continue;
            }
            if let Some(first) = first_of_key.get(&(ws, key)) {
                plans.push(Plan::SameAs(*first));
                continue;
            }
            first_of_key.insert((ws, key), i);
        }
        if q.jobs.contains(ws, job.id) || !new_ids.insert((ws, job.id)) {
            return Err(StoreError::conflict(
                JobId::ENTITY,
                format!("id {} is already used", job.id),
            ));
        }
        plans.push(Plan::New);
    }
    let q = &mut t.queue;
    let mut answers: Vec<Inserted<Job>> = Vec::with_capacity(jobs.len());
    for (job, plan) in jobs.iter().zip(plans) {
        let answer = match plan {
            Plan::New => Inserted {
                value: q.put_job(new_job_row(job)),
                created: true,
            },
            Plan::Existing(id) => Inserted {
                value: q.jobs.find(job.workspace_id, id)?.row.clone(),
                created: false,
            },
            Plan::SameAs(first) => Inserted {
                value: answers
                    .get(first)
                    .map(|a| a.value.clone())
                    .ok_or_else(|| StoreError::not_found(JobId::ENTITY, job.id))?,
                created: false,
            },
        };
        answers.push(answer);
    }
    Ok(answers)
}

/// [`JobStore::complete_jobs`](crm_core::store::JobStore::complete_jobs): each entry
/// lease-checked and applied in order, as `complete_job` would.
pub(super) fn complete_jobs(
    t: &mut Tables,
    jobs: &[(WorkspaceId, JobId, i64)],
    now: DateTime<Utc>,
) -> Vec<Result<(), StoreError>> {
    jobs.iter()
        .map(|&(ws, id, token)| {
            t.queue
                .with_lease(ws, id, token, |job| {
                    job.status = JobStatus::Succeeded;
                    job.updated_at = now;
                })
                .map(|_| ())
        })
        .collect()
}
