//! Sequence definitions and enrollments.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::{EnrollmentId, SequenceId, WorkspaceId};
use crm_core::model::rules::{require_expected_version, require_new_version};
use crm_core::model::{Enrollment, Sequence};
use crm_core::store::{
    EnrollmentAdvanced, EnrollmentChange, EnrollmentFilter, Page, SequenceStore, validate_limit,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Ref, cas_miss, db, db_refs, parse_text};
use crate::page::{fetch_page, page_sql};
use crate::queue::insert_events_in;
use crate::rows::{EnrollmentRow, IntoEntity, SequenceRow, entities, to_json};

mod advance;
mod page;

const SEQUENCE: &str = "sequence";
const ENROLLMENT: &str = "enrollment";

const SEQUENCE_VERSION: &str = "SELECT version FROM sequences WHERE workspace_id = $1 AND id = $2";
const ENROLLMENT_VERSION: &str =
    "SELECT version FROM enrollments WHERE workspace_id = $1 AND id = $2";

/// Each write of a definition also records it in `sequence_versions`, in the same
/// statement (`remember` runs only if the write matched).
macro_rules! with_history {
    ($write:literal) => {
        concat!(
            "WITH written AS (",
            $write,
            " RETURNING *), remember AS (
                 INSERT INTO sequence_versions (workspace_id, sequence_id, version, name,
                     steps, in_flight_policy, created_at, updated_at, status,
                     step_failure_policy)
                 SELECT workspace_id, id, version, name, steps, in_flight_policy,
                     created_at, updated_at, status, step_failure_policy
                 FROM written)
             SELECT * FROM written"
        )
    };
}

const INSERT_SEQUENCE: &str = with_history!(
    "INSERT INTO sequences (workspace_id, id, name, steps, in_flight_policy, created_at,
         updated_at, version, status, step_failure_policy)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

const UPDATE_SEQUENCE: &str = with_history!(
    "UPDATE sequences SET name = $3, steps = $4, in_flight_policy = $5, updated_at = $7,
         status = $9, step_failure_policy = $10, version = version + 1
     WHERE workspace_id = $1 AND id = $2 AND version = $8"
);

const SEQUENCE_AT_VERSION: &str = "
    SELECT workspace_id, sequence_id AS id, name, steps, in_flight_policy, created_at,
        updated_at, version, status, step_failure_policy
    FROM sequence_versions WHERE workspace_id = $1 AND sequence_id = $2 AND version = $3";

/// The states of `EnrollmentState::is_running`, as in the partial indexes.
macro_rules! running_states {
    () => {
        "('pending', 'active', 'step_pending', 'step_sent', 'paused')"
    };
}

const LIST_DUE: &str = concat!(
    "SELECT * FROM enrollments
     WHERE workspace_id = $1 AND state IN ",
    running_states!(),
    " AND next_run_at IS NOT NULL AND next_run_at <= $2
     ORDER BY next_run_at, id LIMIT $3"
);

/// Tenants with due enrollments, earliest first: reads `enrollments_due_idx` (its
/// predicate is implied by the WHERE) in (workspace, next_run_at) order, so each group's
/// minimum is its first entry.
macro_rules! due_workspaces_sql {
    () => {
        concat!(
            "SELECT workspace_id, min(next_run_at) AS first_due FROM enrollments
             WHERE state IN ",
            running_states!(),
            " AND next_run_at IS NOT NULL AND next_run_at <= $1
             GROUP BY workspace_id
             ORDER BY first_due, workspace_id LIMIT $2"
        )
    };
}
const DUE_WORKSPACES: &str = due_workspaces_sql!();

const LIST_ENROLLMENTS: &str = concat!(
    "SELECT * FROM enrollments
     WHERE workspace_id = $1
       AND ($2::uuid IS NULL OR contact_id = $2)
       AND ($3::uuid IS NULL OR sequence_id = $3)
       AND (NOT $4 OR state IN ",
    running_states!(),
    ")
       AND ($5::uuid IS NULL OR id > $5)
     ORDER BY id LIMIT $6"
);

/// An enrollment compare-and-set: `$1`..`$14` as [`bind_enrollment`] binds them,
/// `$15` the stored `updated_at`. The self-join reads the row it replaces, so the
/// events of the change compare against the state it really left, in the same
/// statement.
pub(crate) const SET_ENROLLMENT: &str = "
    UPDATE enrollments e SET sequence_id = $3, sequence_version = $4, contact_id = $5,
        state = $6, current_step = $7, next_run_at = $8, updated_at = $15,
        end_reason = $12, ended_at = $13, step_message_id = $14,
        version = e.version + 1
    FROM enrollments old
    WHERE e.workspace_id = $1 AND e.id = $2 AND e.version = $11
      AND old.workspace_id = e.workspace_id AND old.id = e.id
    RETURNING e.*, old.state AS before_state";

/// A row written by [`SET_ENROLLMENT`]: the stored enrollment and the state it left.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChangedEnrollmentRow {
    #[sqlx(flatten)]
    after: EnrollmentRow,
    before_state: String,
}

impl ChangedEnrollmentRow {
    /// The stored enrollment and the events of its change
    /// (`crm_core::events::enrollment_transition`).
    pub(crate) fn into_change(
        self,
    ) -> Result<(Enrollment, Vec<crm_core::model::NewEvent>), StoreError> {
        let after = self.after.into_entity()?;
        // Only the state of the row replaced differs in what the events read.
        let mut before = after.clone();
        before.state = parse_text(&self.before_state)?;
        before.version = after.version - 1;
        let events = events::enrollment_transition(&before, &after)?;
        Ok((after, events))
    }
}

type PgQueryAs<'q, R> = sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

fn bind_sequence<'q>(
    q: PgQueryAs<'q, SequenceRow>,
    s: &Sequence,
) -> Result<PgQueryAs<'q, SequenceRow>, StoreError> {
    Ok(q.bind(s.workspace_id.as_uuid())
        .bind(s.id.as_uuid())
        .bind(s.name.clone())
        .bind(to_json("sequence.steps", &s.steps)?)
        .bind(s.in_flight_policy.as_str())
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(s.version)
        .bind(s.status.as_str())
        .bind(s.step_failure_policy.as_str()))
}

fn bind_enrollment<'q, R>(q: PgQueryAs<'q, R>, e: &Enrollment) -> PgQueryAs<'q, R> {
    q.bind(e.workspace_id.as_uuid())
        .bind(e.id.as_uuid())
        .bind(e.sequence_id.as_uuid())
        .bind(e.sequence_version)
        .bind(e.contact_id.as_uuid())
        .bind(e.state.as_str())
        .bind(e.current_step)
        .bind(e.next_run_at)
        .bind(e.created_at)
        .bind(e.updated_at)
        .bind(e.version)
        .bind(e.end_reason.clone())
        .bind(e.ended_at)
        .bind(e.step_message_id.map(|id| id.as_uuid()))
}

/// The foreign keys an enrollment write may break.
pub(crate) fn enrollment_refs(e: &Enrollment) -> [Ref; 2] {
    [
        Ref::new(
            "enrollments_sequence_fk",
            SEQUENCE,
            Some(e.sequence_id.as_uuid()),
        ),
        Ref::new(
            "enrollments_contact_fk",
            "contact",
            Some(e.contact_id.as_uuid()),
        ),
    ]
}

#[async_trait]
impl SequenceStore for PostgresStore {
    async fn insert_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        sequence.validate()?;
        require_new_version(sequence.version)?;
        let mut tx = self.pool.begin().await.map_err(db(SEQUENCE))?;
        let stored = bind_sequence(sqlx::query_as(INSERT_SEQUENCE), sequence)?
            .fetch_one(&mut *tx)
            .await
            .map_err(db(SEQUENCE))?
            .into_entity()?;
        insert_events_in(&mut tx, &[events::sequence_saved(&stored)?]).await?;
        tx.commit().await.map_err(db(SEQUENCE))?;
        Ok(stored)
    }

    async fn get_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Sequence, StoreError> {
        sqlx::query_as::<_, SequenceRow>(
            "SELECT * FROM sequences WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(SEQUENCE))?
        .ok_or_else(|| StoreError::not_found(SEQUENCE, id))?
        .into_entity()
    }

    async fn update_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        sequence.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(SEQUENCE))?;
        let row = bind_sequence(sqlx::query_as(UPDATE_SEQUENCE), sequence)?
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(SEQUENCE))?;
        match row {
            Some(row) => {
                let stored = row.into_entity()?;
                insert_events_in(&mut tx, &[events::sequence_saved(&stored)?]).await?;
                tx.commit().await.map_err(db(SEQUENCE))?;
                Ok(stored)
            }
            None => {
                drop(tx);
                let (ws, id) = (sequence.workspace_id, sequence.id.as_uuid());
                Err(cas_miss(
                    &self.pool,
                    SEQUENCE_VERSION,
                    SEQUENCE,
                    ws,
                    id,
                    sequence.version,
                )
                .await)
            }
        }
    }

    async fn get_sequence_version(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
        version: i64,
    ) -> Result<Sequence, StoreError> {
        sqlx::query_as::<_, SequenceRow>(SEQUENCE_AT_VERSION)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(SEQUENCE))?
            .ok_or_else(|| StoreError::not_found(SEQUENCE, format!("{id} version {version}")))?
            .into_entity()
    }

    async fn list_sequences(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SequenceId>,
    ) -> Result<Vec<Sequence>, StoreError> {
        page.validate()?;
        fetch_page::<SequenceRow>(
            &self.pool,
            page_sql!("sequences"),
            workspace_id,
            page.after.map(|id| id.as_uuid()),
            page.limit,
            SEQUENCE,
        )
        .await
    }

    async fn insert_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        require_new_version(enrollment.version)?;
        let mut tx = self.pool.begin().await.map_err(db(ENROLLMENT))?;
        let stored = bind_enrollment(
            sqlx::query_as::<_, EnrollmentRow>(
                "INSERT INTO enrollments (workspace_id, id, sequence_id, sequence_version,
                     contact_id, state, current_step, next_run_at, created_at, updated_at,
                     version, end_reason, ended_at, step_message_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 RETURNING *",
            ),
            enrollment,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_refs(ENROLLMENT, &enrollment_refs(enrollment)))?
        .into_entity()?;
        insert_events_in(&mut tx, &[events::enrollment_enrolled(&stored)?]).await?;
        tx.commit().await.map_err(db(ENROLLMENT))?;
        Ok(stored)
    }

    async fn get_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
    ) -> Result<Enrollment, StoreError> {
        sqlx::query_as::<_, EnrollmentRow>(
            "SELECT * FROM enrollments WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(ENROLLMENT))?
        .ok_or_else(|| StoreError::not_found(ENROLLMENT, id))?
        .into_entity()
    }

    async fn update_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        require_expected_version(enrollment.version)?;
        let mut tx = self.pool.begin().await.map_err(db(ENROLLMENT))?;
        let row = bind_enrollment(
            sqlx::query_as::<_, ChangedEnrollmentRow>(SET_ENROLLMENT),
            enrollment,
        )
        .bind(enrollment.updated_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_refs(ENROLLMENT, &enrollment_refs(enrollment)))?;
        match row {
            Some(row) => {
                let (stored, events) = row.into_change()?;
                insert_events_in(&mut tx, &events).await?;
                tx.commit().await.map_err(db(ENROLLMENT))?;
                Ok(stored)
            }
            None => {
                drop(tx);
                let (ws, id) = (enrollment.workspace_id, enrollment.id.as_uuid());
                let expected = enrollment.version;
                Err(cas_miss(&self.pool, ENROLLMENT_VERSION, ENROLLMENT, ws, id, expected).await)
            }
        }
    }

    async fn list_due_enrollments(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Enrollment>, StoreError> {
        validate_limit(limit)?;
        let rows = sqlx::query_as::<_, EnrollmentRow>(LIST_DUE)
            .bind(workspace_id.as_uuid())
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db(ENROLLMENT))?;
        entities(rows)
    }

    async fn list_workspaces_with_due_enrollments(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WorkspaceId>, StoreError> {
        validate_limit(limit)?;
        let rows = sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(DUE_WORKSPACES)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db(ENROLLMENT))?;
        Ok(rows
            .into_iter()
            .map(|(ws, _)| WorkspaceId::from_uuid(ws))
            .collect())
    }

    async fn advance_enrollment(
        &self,
        change: &EnrollmentChange,
    ) -> Result<EnrollmentAdvanced, StoreError> {
        advance::validate(change)?;
        self.advance(change).await
    }

    async fn advance_enrollments(
        &self,
        changes: &[EnrollmentChange],
    ) -> Result<Vec<Result<EnrollmentAdvanced, StoreError>>, StoreError> {
        self.advance_page(changes).await
    }

    async fn list_enrollments(
        &self,
        workspace_id: WorkspaceId,
        filter: &EnrollmentFilter,
        page: Page<EnrollmentId>,
    ) -> Result<Vec<Enrollment>, StoreError> {
        page.validate()?;
        let rows = sqlx::query_as::<_, EnrollmentRow>(LIST_ENROLLMENTS)
            .bind(workspace_id.as_uuid())
            .bind(filter.contact_id.map(|id| id.as_uuid()))
            .bind(filter.sequence_id.map(|id| id.as_uuid()))
            .bind(filter.running_only)
            .bind(page.after.map(|id| id.as_uuid()))
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db(ENROLLMENT))?;
        entities(rows)
    }
}

// Last, so the SQL macros above are in scope.
#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod predicate_tests {
    use crm_core::model::EnrollmentState;

    #[test]
    fn running_states_are_the_rust_predicate() {
        let mut sql: Vec<&str> = running_states!()
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|s| s.trim_matches('\''))
            .collect();
        sql.sort_unstable();
        let mut rust: Vec<&str> = EnrollmentState::ALL
            .iter()
            .filter(|s| s.is_running())
            .map(EnrollmentState::as_str)
            .collect();
        rust.sort_unstable();
        assert_eq!(
            sql, rust,
            "running_states! lists EnrollmentState::is_running"
        );
    }
}
