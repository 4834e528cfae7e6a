//! The intake buffer, deduplicated by fingerprint.

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::ids::{AccountId, ContactId, IntakeRecordId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{Contact, FieldProvenance, IntakeRecord, IntakeStatus};
use crm_core::store::{IntakeCompletion, IntakeStore, Page};

use crate::PostgresStore;
use crate::error::{Ref, cas_miss, db, db_refs, invalid};
use crate::page::{fetch_status_page, status_page_sql};
use crate::rows::{IntakeRow, IntoEntity, to_json};

pub(crate) const INTAKE: &str = "intake_record";

/// How often `insert_intake` retries when the row it collided with stopped being live
/// (pending or processed) before the duplicate could point at it.
const DEDUP_RETRIES: usize = 3;

/// Stores the row as given, unless a live row (pending or processed) already has its
/// fingerprint: the partial unique index `intake_records_fingerprint_key` arbitrates.
const INSERT_LIVE: &str = "
    INSERT INTO intake_records (workspace_id, id, source, source_ref, line, raw, fingerprint,
        status, duplicate_of, errors, contact_id, received_at, updated_at, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (workspace_id, fingerprint) WHERE status IN ('pending', 'processed')
    DO NOTHING
    RETURNING *";

/// Stores the row as a duplicate of the live row with its fingerprint, in one
/// statement; no row comes back if there is no live row any more.
const INSERT_DUPLICATE: &str = "
    INSERT INTO intake_records (workspace_id, id, source, source_ref, line, raw, fingerprint,
        status, duplicate_of, errors, contact_id, received_at, updated_at, version)
    SELECT $1, $2, $3, $4, $5, $6, $7, 'duplicate', live.id, $10, $11, $12, $13, $14
    FROM intake_records live
    WHERE live.workspace_id = $1 AND live.fingerprint = $7
      AND live.status IN ('pending', 'processed')
    LIMIT 1
    RETURNING *";

/// Compare-and-set update of a row (see [`bind_record`] for the parameters).
pub(crate) const UPDATE_INTAKE: &str = "
    UPDATE intake_records SET source = $3, source_ref = $4, line = $5, raw = $6,
        fingerprint = $7, status = $8, duplicate_of = $9, errors = $10,
        contact_id = $11, updated_at = $13, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND version = $14
    RETURNING *";

pub(crate) const INTAKE_VERSION: &str =
    "SELECT version FROM intake_records WHERE workspace_id = $1 AND id = $2";

pub(crate) type PgQueryAs<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, IntakeRow, sqlx::postgres::PgArguments>;

pub(crate) fn bind_record<'q>(
    q: PgQueryAs<'q>,
    r: &IntakeRecord,
) -> Result<PgQueryAs<'q>, StoreError> {
    let line = r
        .line
        .map(i64::try_from)
        .transpose()
        .map_err(|_| invalid("intake.line", "is too large"))?;
    Ok(q.bind(r.workspace_id.as_uuid())
        .bind(r.id.as_uuid())
        .bind(r.source.as_str())
        .bind(r.source_ref.clone())
        .bind(line)
        .bind(r.raw.clone())
        .bind(r.fingerprint.as_ref().map(|f| f.as_str().to_owned()))
        .bind(r.status.as_str())
        .bind(r.duplicate_of.map(|id| id.as_uuid()))
        .bind(to_json("intake.errors", &r.errors)?)
        .bind(r.contact_id.map(|id| id.as_uuid()))
        .bind(r.received_at)
        .bind(r.updated_at)
        .bind(r.version))
}

pub(crate) fn refs(r: &IntakeRecord) -> [Ref; 2] {
    [
        Ref::new(
            "intake_records_duplicate_fk",
            INTAKE,
            r.duplicate_of.map(|id| id.as_uuid()),
        ),
        Ref::new(
            "intake_records_contact_fk",
            "contact",
            r.contact_id.map(|id| id.as_uuid()),
        ),
    ]
}

#[async_trait]
impl IntakeStore for PostgresStore {
    async fn insert_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
        record.validate()?;
        require_new_version(record.version)?;
        if !matches!(record.status, IntakeStatus::Pending | IntakeStatus::Invalid) {
            return Err(invalid(
                "intake.status",
                "a new row must be pending or invalid",
            ));
        }
        let refs = refs(record);
        for _ in 0..DEDUP_RETRIES {
            let row = bind_record(sqlx::query_as(INSERT_LIVE), record)?
                .fetch_optional(&self.pool)
                .await
                .map_err(db_refs(INTAKE, &refs))?;
            if let Some(row) = row {
                return row.into_entity();
            }
            // A live row holds the fingerprint (ON CONFLICT waited for it to commit):
            // store this one as its duplicate.
            let row = bind_record(sqlx::query_as(INSERT_DUPLICATE), record)?
                .fetch_optional(&self.pool)
                .await
                .map_err(db_refs(INTAKE, &refs))?;
            if let Some(row) = row {
                return row.into_entity();
            }
        }
        Err(StoreError::conflict(
            INTAKE,
            "the row with this fingerprint changed concurrently; try again",
        ))
    }

    async fn get_intake(
        &self,
        workspace_id: WorkspaceId,
        id: IntakeRecordId,
    ) -> Result<IntakeRecord, StoreError> {
        sqlx::query_as::<_, IntakeRow>(
            "SELECT * FROM intake_records WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(INTAKE))?
        .ok_or_else(|| StoreError::not_found(INTAKE, id))?
        .into_entity()
    }

    async fn update_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
        record.validate()?;
        let row = bind_record(sqlx::query_as(UPDATE_INTAKE), record)?
            .fetch_optional(&self.pool)
            .await
            .map_err(db_refs(INTAKE, &refs(record)))?;
        match row {
            Some(row) => row.into_entity(),
            None => {
                let (ws, id) = (record.workspace_id, record.id.as_uuid());
                Err(cas_miss(&self.pool, INTAKE_VERSION, INTAKE, ws, id, record.version).await)
            }
        }
    }

    async fn list_intake(
        &self,
        workspace_id: WorkspaceId,
        status: Option<IntakeStatus>,
        page: Page<IntakeRecordId>,
    ) -> Result<Vec<IntakeRecord>, StoreError> {
        page.validate()?;
        fetch_status_page::<IntakeRow>(
            &self.pool,
            status_page_sql!("intake_records"),
            workspace_id,
            status.map(|s| s.as_str()),
            page.after.map(|id| id.as_uuid()),
            page.limit,
            INTAKE,
        )
        .await
    }

    async fn insert_intake_batch(
        &self,
        workspace_id: WorkspaceId,
        records: Vec<IntakeRecord>,
    ) -> Result<Vec<IntakeRecord>, StoreError> {
        crate::intake_batch::insert_batch(&self.pool, workspace_id, records).await
    }

    async fn complete_intake(
        &self,
        completion: &IntakeCompletion,
    ) -> Result<IntakeRecord, StoreError> {
        crate::intake_complete::complete(&self.pool, completion).await
    }

    async fn upsert_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        rows: &[FieldProvenance],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db(INTAKE))?;
        crate::intake_batch::upsert_provenance(&mut conn, workspace_id, rows).await
    }

    async fn list_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Vec<FieldProvenance>, StoreError> {
        crate::intake_batch::list_provenance(&self.pool, workspace_id, contact_id).await
    }

    async fn list_account_contacts(
        &self,
        workspace_id: WorkspaceId,
        account_id: AccountId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError> {
        crate::intake_batch::list_account_contacts(&self.pool, workspace_id, account_id, page).await
    }
}
