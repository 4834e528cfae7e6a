//! Batched intake inserts (one `UNNEST` statement per batch) and per-field provenance.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{AccountId, ContactId, IntakeRecordId, WorkspaceId};
use crm_core::model::{Contact, FieldProvenance, IntakeRecord, IntakeStatus};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Ref, db, db_refs, invalid, parse_text, require_version_one};
use crm_core::store::Page;

use crate::rows::{ContactRow, IntakeRow, IntoEntity, entities};

const INTAKE: &str = "intake_record";
const PROVENANCE: &str = "contact_field_provenance";

/// Largest batch accepted: bounds the statement's arrays and the memory of one call.
const MAX_BATCH: usize = 1000;

/// How often a batch is re-run for rows whose fingerprint holder committed
/// concurrently (invisible to the statement's snapshot, so neither stored nor matched).
const DEDUP_RETRIES: usize = 3;

/// One statement: the first row of each fingerprint (in input order) is stored as given
/// unless a live row already holds it (`ON CONFLICT ... DO NOTHING` on the partial
/// unique index); every other pending row with a fingerprint is stored as a duplicate
/// of the live row, be it older (`old`) or inserted by this statement (`first`).
/// Foreign keys are checked at the end of the statement, so a duplicate may point at a
/// row inserted in the same statement.
const INSERT_BATCH: &str = "
    WITH input AS (
        SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                             $11::timestamptz[])
            WITH ORDINALITY AS t(id, source, source_ref, line, raw, fingerprint, status,
                                 errors, received_at, updated_at, ord)
    ),
    live AS (
        INSERT INTO intake_records (workspace_id, id, source, source_ref, line, raw,
            fingerprint, status, duplicate_of, errors, contact_id, received_at, updated_at,
            version)
        SELECT $1, id, source, source_ref, line, raw::jsonb, fingerprint, status, NULL,
            errors::jsonb, NULL, received_at, updated_at, 1
        FROM input ORDER BY ord
        ON CONFLICT (workspace_id, fingerprint) WHERE status IN ('pending', 'processed')
        DO NOTHING
        RETURNING *
    ),
    dups AS (
        INSERT INTO intake_records (workspace_id, id, source, source_ref, line, raw,
            fingerprint, status, duplicate_of, errors, contact_id, received_at, updated_at,
            version)
        SELECT $1, i.id, i.source, i.source_ref, i.line, i.raw::jsonb, i.fingerprint,
            'duplicate', COALESCE(old.id, first.id), i.errors::jsonb, NULL, i.received_at,
            i.updated_at, 1
        FROM input i
        LEFT JOIN LATERAL (
            SELECT r.id FROM intake_records r
            WHERE r.workspace_id = $1 AND r.fingerprint = i.fingerprint
              AND r.status IN ('pending', 'processed')
            LIMIT 1) old ON true
        LEFT JOIN LATERAL (
            SELECT l.id FROM live l WHERE l.fingerprint = i.fingerprint LIMIT 1) first ON true
        WHERE i.status = 'pending' AND i.fingerprint IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM live l WHERE l.id = i.id)
          AND COALESCE(old.id, first.id) IS NOT NULL
        RETURNING *
    )
    SELECT * FROM live UNION ALL SELECT * FROM dups";

/// Column arrays of a batch, in input order.
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    sources: Vec<String>,
    source_refs: Vec<String>,
    lines: Vec<Option<i64>>,
    raws: Vec<String>,
    fingerprints: Vec<Option<String>>,
    statuses: Vec<String>,
    errors: Vec<String>,
    received: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
}

impl Columns {
    fn push(&mut self, r: &IntakeRecord) -> Result<(), StoreError> {
        let line = r
            .line
            .map(i64::try_from)
            .transpose()
            .map_err(|_| invalid("intake.line", "is too large"))?;
        let errors = serde_json::to_string(&r.errors)
            .map_err(|e| invalid("intake.errors", e.to_string()))?;
        self.ids.push(r.id.as_uuid());
        self.sources.push(r.source.as_str().to_owned());
        self.source_refs.push(r.source_ref.clone());
        self.lines.push(line);
        self.raws.push(r.raw.to_string());
        self.fingerprints
            .push(r.fingerprint.as_ref().map(|f| f.as_str().to_owned()));
        self.statuses.push(r.status.as_str().to_owned());
        self.errors.push(errors);
        self.received.push(r.received_at);
        self.updated.push(r.updated_at);
        Ok(())
    }
}

/// Checks a batch before anything is written, as the memory store does.
fn check_batch(workspace_id: WorkspaceId, records: &[IntakeRecord]) -> Result<(), StoreError> {
    if records.len() > MAX_BATCH {
        return Err(invalid("intake.batch", "at most 1000 rows"));
    }
    let mut ids = HashSet::with_capacity(records.len());
    for r in records {
        r.validate()?;
        require_version_one(r.version)?;
        if r.workspace_id != workspace_id {
            return Err(invalid(
                "intake.workspace_id",
                "every row must belong to the batch's workspace",
            ));
        }
        if !matches!(r.status, IntakeStatus::Pending | IntakeStatus::Invalid) {
            return Err(invalid(
                "intake.status",
                "a new row must be pending or invalid",
            ));
        }
        if r.contact_id.is_some() || r.duplicate_of.is_some() {
            return Err(invalid(
                "intake.contact_id",
                "a batched row cannot carry a contact or duplicate link yet",
            ));
        }
        if !ids.insert(r.id) {
            return Err(StoreError::conflict(INTAKE, "id repeated in the batch"));
        }
    }
    Ok(())
}

/// See [`IntakeStore::insert_intake_batch`](crm_core::store::IntakeStore).
pub(crate) async fn insert_batch(
    pool: &PgPool,
    workspace_id: WorkspaceId,
    records: &[IntakeRecord],
) -> Result<Vec<IntakeRecord>, StoreError> {
    check_batch(workspace_id, records)?;
    let mut stored: HashMap<IntakeRecordId, IntakeRecord> = HashMap::with_capacity(records.len());
    let mut todo: Vec<&IntakeRecord> = records.iter().collect();
    for _ in 0..DEDUP_RETRIES {
        if todo.is_empty() {
            break;
        }
        let mut cols = Columns::default();
        for r in &todo {
            cols.push(r)?;
        }
        let rows = sqlx::query_as::<_, IntakeRow>(INSERT_BATCH)
            .bind(workspace_id.as_uuid())
            .bind(cols.ids)
            .bind(cols.sources)
            .bind(cols.source_refs)
            .bind(cols.lines)
            .bind(cols.raws)
            .bind(cols.fingerprints)
            .bind(cols.statuses)
            .bind(cols.errors)
            .bind(cols.received)
            .bind(cols.updated)
            .fetch_all(pool)
            .await
            .map_err(db(INTAKE))?;
        for row in rows {
            let record = row.into_entity()?;
            stored.insert(record.id, record);
        }
        todo.retain(|r| !stored.contains_key(&r.id));
    }
    if !todo.is_empty() {
        return Err(StoreError::conflict(
            INTAKE,
            "rows with these fingerprints changed concurrently; insert the rest again",
        ));
    }
    records
        .iter()
        .map(|r| {
            stored
                .remove(&r.id)
                .ok_or_else(|| StoreError::not_found(INTAKE, r.id))
        })
        .collect()
}

/// See [`IntakeStore::upsert_field_provenance`](crm_core::store::IntakeStore).
pub(crate) async fn upsert_provenance(
    pool: &PgPool,
    workspace_id: WorkspaceId,
    rows: &[FieldProvenance],
) -> Result<(), StoreError> {
    let mut contacts = Vec::with_capacity(rows.len());
    let mut fields = Vec::with_capacity(rows.len());
    let mut sources = Vec::with_capacity(rows.len());
    let mut source_refs = Vec::with_capacity(rows.len());
    let mut intakes = Vec::with_capacity(rows.len());
    let mut times = Vec::with_capacity(rows.len());
    let mut seen = HashSet::with_capacity(rows.len());
    for row in rows {
        row.validate()?;
        if row.workspace_id != workspace_id {
            return Err(invalid(
                "provenance.workspace_id",
                "every row must belong to the batch's workspace",
            ));
        }
        // ON CONFLICT DO UPDATE cannot touch one row twice: the last write of a field wins.
        if !seen.insert((row.contact_id, row.field.clone())) {
            let at = contacts
                .iter()
                .zip(&fields)
                .position(|(c, f)| *c == row.contact_id.as_uuid() && *f == row.field);
            if let Some(at) = at {
                sources[at] = row.source.as_str().to_owned();
                source_refs[at] = row.source_ref.clone();
                intakes[at] = row.intake_id.as_uuid();
                times[at] = row.recorded_at;
            }
            continue;
        }
        contacts.push(row.contact_id.as_uuid());
        fields.push(row.field.clone());
        sources.push(row.source.as_str().to_owned());
        source_refs.push(row.source_ref.clone());
        intakes.push(row.intake_id.as_uuid());
        times.push(row.recorded_at);
    }
    if contacts.is_empty() {
        return Ok(());
    }
    let refs = [
        Ref::new("contact_field_provenance_contact_fk", "contact", None),
        Ref::new("contact_field_provenance_intake_fk", INTAKE, None),
    ];
    sqlx::query(
        "INSERT INTO contact_field_provenance
             (workspace_id, contact_id, field, source, source_ref, intake_id, recorded_at)
         SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                                  $7::timestamptz[])
         ON CONFLICT (workspace_id, contact_id, field) DO UPDATE
         SET source = EXCLUDED.source, source_ref = EXCLUDED.source_ref,
             intake_id = EXCLUDED.intake_id, recorded_at = EXCLUDED.recorded_at",
    )
    .bind(workspace_id.as_uuid())
    .bind(contacts)
    .bind(fields)
    .bind(sources)
    .bind(source_refs)
    .bind(intakes)
    .bind(times)
    .execute(pool)
    .await
    .map_err(db_refs(PROVENANCE, &refs))?;
    Ok(())
}

type ProvenanceRow = (Uuid, String, String, String, Uuid, DateTime<Utc>);

/// See [`IntakeStore::list_field_provenance`](crm_core::store::IntakeStore).
pub(crate) async fn list_provenance(
    pool: &PgPool,
    workspace_id: WorkspaceId,
    contact_id: ContactId,
) -> Result<Vec<FieldProvenance>, StoreError> {
    let rows = sqlx::query_as::<_, ProvenanceRow>(
        "SELECT contact_id, field, source, source_ref, intake_id, recorded_at
         FROM contact_field_provenance
         WHERE workspace_id = $1 AND contact_id = $2
         ORDER BY field COLLATE \"C\"",
    )
    .bind(workspace_id.as_uuid())
    .bind(contact_id.as_uuid())
    .fetch_all(pool)
    .await
    .map_err(db(PROVENANCE))?;
    rows.into_iter()
        .map(|(contact, field, source, source_ref, intake, at)| {
            Ok(FieldProvenance {
                workspace_id,
                contact_id: ContactId::from_uuid(contact),
                field,
                source: parse_text(&source)?,
                source_ref,
                intake_id: IntakeRecordId::from_uuid(intake),
                recorded_at: at,
            })
        })
        .collect()
}

/// See [`IntakeStore::list_account_contacts`](crm_core::store::IntakeStore); served by
/// the partial index `contacts_account_idx`.
pub(crate) async fn list_account_contacts(
    pool: &PgPool,
    workspace_id: WorkspaceId,
    account_id: AccountId,
    page: Page<ContactId>,
) -> Result<Vec<Contact>, StoreError> {
    page.validate()?;
    let rows = sqlx::query_as::<_, ContactRow>(
        "SELECT * FROM contacts
         WHERE workspace_id = $1 AND account_id = $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(workspace_id.as_uuid())
    .bind(account_id.as_uuid())
    .bind(page.after.map(|id| id.as_uuid()))
    .bind(i64::from(page.limit))
    .fetch_all(pool)
    .await
    .map_err(db("contact"))?;
    entities(rows)
}
