//! Batched intake inserts (one `COPY` per batch) and per-field provenance.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use crm_core::StoreError;
use crm_core::ids::{AccountId, ContactId, IntakeRecordId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{Contact, FieldProvenance, IntakeRecord, IntakeStatus};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{Ref, db, db_refs, invalid, parse_text};
use crm_core::store::{MAX_INTAKE_BATCH, Page};

use crate::rows::{ContactRow, entities};

const INTAKE: &str = "intake_record";
const PROVENANCE: &str = "contact_field_provenance";

/// How often a batch is tried again after a concurrent batch stored one of its
/// fingerprints between the lookup and the `COPY`.
const DEDUP_RETRIES: usize = 3;

/// The live holders of fingerprints (the pending or processed row that owns each):
/// one probe of the partial unique index per fingerprint (a plain `= ANY($2)` may be
/// planned as a scan of the workspace's rows).
const LIVE_HOLDERS: &str = "
    SELECT f.fingerprint, r.id
    FROM UNNEST($2::text[]) AS f(fingerprint)
    CROSS JOIN LATERAL (
        SELECT id FROM intake_records
        WHERE workspace_id = $1 AND fingerprint = f.fingerprint
          AND status IN ('pending', 'processed')
        LIMIT 1) r";

const COPY_ROWS: &str = "
    COPY intake_records (workspace_id, id, source, source_ref, line, raw, fingerprint,
        status, duplicate_of, errors, received_at, updated_at, version)
    FROM STDIN WITH (FORMAT csv)";

/// The partial unique index that keeps one live row per fingerprint.
const FINGERPRINT_KEY: &str = "intake_records_fingerprint_key";

/// What the store decides for a row: its status and the live row it duplicates.
type Decision = (IntakeStatus, Option<IntakeRecordId>);

/// Decides each row's status in input order: the first pending row of a fingerprint
/// stays pending unless a live row already holds it; every later one, and every one an
/// older live row holds, is a duplicate of that holder.
fn decide<'a>(records: &'a [IntakeRecord], mut holders: HashMap<&'a str, Uuid>) -> Vec<Decision> {
    records
        .iter()
        .map(|r| match (r.status, &r.fingerprint) {
            (IntakeStatus::Pending, Some(fp)) => match holders.get(fp.as_str()) {
                Some(holder) => (
                    IntakeStatus::Duplicate,
                    Some(IntakeRecordId::from_uuid(*holder)),
                ),
                None => {
                    holders.insert(fp.as_str(), r.id.as_uuid());
                    (IntakeStatus::Pending, None)
                }
            },
            _ => (r.status, r.duplicate_of),
        })
        .collect()
}

/// The rows as `COPY ... (FORMAT csv)` data: an empty unquoted field is NULL, and no
/// non-null text column can be empty (source, reference, JSON and status never are).
fn csv_data(rows: &[IntakeRecord], decisions: &[Decision]) -> Result<Vec<u8>, StoreError> {
    let encode = |e: csv::Error| invalid("intake.batch", e.to_string());
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 512));
    // Every row is in the batch's workspace (checked before).
    let workspace = rows
        .first()
        .map(|r| r.workspace_id.to_string())
        .unwrap_or_default();
    for (r, (status, duplicate_of)) in rows.iter().zip(decisions) {
        let errors = serde_json::to_string(&r.errors)
            .map_err(|e| invalid("intake.errors", e.to_string()))?;
        out.write_record([
            workspace.as_str(),
            r.id.to_string().as_str(),
            r.source.as_str(),
            r.source_ref.as_str(),
            r.line.map(|l| l.to_string()).unwrap_or_default().as_str(),
            r.raw.to_string().as_str(),
            r.fingerprint.as_ref().map_or("", |f| f.as_str()),
            status.as_str(),
            duplicate_of
                .map(|d| d.to_string())
                .unwrap_or_default()
                .as_str(),
            errors.as_str(),
            time(r.received_at).as_str(),
            time(r.updated_at).as_str(),
            "1",
        ])
        .map_err(encode)?;
    }
    out.into_inner()
        .map_err(|e| invalid("intake.batch", e.to_string()))
}

/// Whether a failed `COPY` lost a race on a fingerprint (worth another lookup).
fn lost_fingerprint_race(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.constraint() == Some(FINGERPRINT_KEY))
}

/// Checks a batch before anything is written, as the memory store does.
fn check_batch(workspace_id: WorkspaceId, records: &[IntakeRecord]) -> Result<(), StoreError> {
    if records.len() > MAX_INTAKE_BATCH {
        return Err(invalid("intake.batch", "at most 10000 rows"));
    }
    let mut ids = HashSet::with_capacity(records.len());
    for r in records {
        r.validate()?;
        require_new_version(r.version)?;
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

/// See [`IntakeStore::insert_intake_batch`](crm_core::store::IntakeStore): one lookup
/// of the fingerprints' live holders, the statuses decided here, then one `COPY` of the
/// whole batch (all or nothing). A concurrent batch that stores one of the fingerprints
/// in between makes the `COPY` fail on the partial unique index; the batch is then
/// decided again against the new holders.
pub(crate) async fn insert_batch(
    pool: &PgPool,
    workspace_id: WorkspaceId,
    mut records: Vec<IntakeRecord>,
) -> Result<Vec<IntakeRecord>, StoreError> {
    check_batch(workspace_id, &records)?;
    if records.is_empty() {
        return Ok(records);
    }
    let fingerprints: Vec<&str> = records
        .iter()
        .filter(|r| r.status == IntakeStatus::Pending)
        .filter_map(|r| r.fingerprint.as_ref().map(|f| f.as_str()))
        .collect();
    let mut settled = None;
    for _ in 0..DEDUP_RETRIES {
        let holders: Vec<(String, Uuid)> = if fingerprints.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(LIVE_HOLDERS)
                .bind(workspace_id.as_uuid())
                .bind(&fingerprints)
                .fetch_all(pool)
                .await
                .map_err(db(INTAKE))?
        };
        let decisions = decide(
            &records,
            holders.iter().map(|(fp, id)| (fp.as_str(), *id)).collect(),
        );
        let data = csv_data(&records, &decisions)?;
        let mut copy = pool.copy_in_raw(COPY_ROWS).await.map_err(db(INTAKE))?;
        copy.send(data).await.map_err(db(INTAKE))?;
        match copy.finish().await {
            Ok(_) => {
                settled = Some(decisions);
                break;
            }
            Err(e) if lost_fingerprint_race(&e) => {}
            Err(e) => return Err(db(INTAKE)(e)),
        }
    }
    let decisions = settled.ok_or_else(|| {
        StoreError::conflict(
            INTAKE,
            "rows with these fingerprints changed concurrently; insert the batch again",
        )
    })?;
    for (r, (status, duplicate_of)) in records.iter_mut().zip(decisions) {
        r.status = status;
        r.duplicate_of = duplicate_of;
    }
    Ok(records)
}

/// See [`IntakeStore::upsert_field_provenance`](crm_core::store::IntakeStore).
pub(crate) async fn upsert_provenance(
    conn: &mut PgConnection,
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
    .execute(conn)
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
