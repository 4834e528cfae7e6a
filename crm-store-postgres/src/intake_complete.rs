//! A processed intake row's writes in one transaction (see
//! [`IntakeStore::complete_intake`](crm_core::store::IntakeStore::complete_intake)).

use crm_core::StoreError;
use crm_core::model::{Contact, IntakeRecord};
use crm_core::store::{ContactWrite, IntakeCompletion};
use sqlx::{PgConnection, PgPool};

use crate::crm::{
    CONTACT, CONTACT_VERSION, INSERT_CONTACT, UPDATE_CONTACT, bind_contact, contact_refs,
};
use crate::error::{cas_miss, db, db_refs};
use crate::intake::{INTAKE, INTAKE_VERSION, UPDATE_INTAKE, bind_record, refs};
use crate::intake_batch::upsert_provenance;
use crate::queue::insert_events_in;
use crate::rows::{ContactRow, IntakeRow, IntoEntity};

const LOCK_INTAKE: &str =
    "SELECT version FROM intake_records WHERE workspace_id = $1 AND id = $2 FOR UPDATE";

/// Writes the contact. A compare-and-set miss is answered from `pool` (the caller's
/// transaction is rolled back when it is dropped).
async fn write_contact(
    conn: &mut PgConnection,
    pool: &PgPool,
    write: &ContactWrite,
) -> Result<(), StoreError> {
    let (sql, contact): (&str, &Contact) = match write {
        ContactWrite::Create(c) => (INSERT_CONTACT, c),
        ContactWrite::Update(c) => (UPDATE_CONTACT, c),
        ContactWrite::Keep => return Ok(()),
    };
    let row: Option<ContactRow> = bind_contact(sqlx::query_as(sql), contact)?
        .fetch_optional(conn)
        .await
        .map_err(db_refs(CONTACT, &contact_refs(contact)))?;
    match row {
        Some(_) => Ok(()),
        None => {
            let (ws, id) = (contact.workspace_id, contact.id.as_uuid());
            Err(cas_miss(pool, CONTACT_VERSION, CONTACT, ws, id, contact.version).await)
        }
    }
}

/// See [`IntakeStore::complete_intake`](crm_core::store::IntakeStore::complete_intake):
/// one transaction; any error drops it, which rolls everything back.
pub(crate) async fn complete(
    pool: &PgPool,
    c: &IntakeCompletion,
) -> Result<IntakeRecord, StoreError> {
    c.validate()?;
    let ws = c.intake.workspace_id;
    let mut tx = pool.begin().await.map_err(db(INTAKE))?;
    // The row first, locked: a completion of a row that moved on is refused before
    // anything else is tried (as the memory store checks it first), and two
    // completions of one row queue here instead of racing on the contact.
    let (id, version) = (c.intake.id.as_uuid(), c.intake.version);
    let held: Option<i64> = sqlx::query_scalar(LOCK_INTAKE)
        .bind(ws.as_uuid())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(INTAKE))?;
    if held != Some(version) {
        return Err(cas_miss(pool, INTAKE_VERSION, INTAKE, ws, id, version).await);
    }
    write_contact(&mut tx, pool, &c.contact).await?;
    upsert_provenance(&mut tx, ws, &c.provenance).await?;
    insert_events_in(&mut tx, std::slice::from_ref(&c.event)).await?;
    let row: Option<IntakeRow> = bind_record(sqlx::query_as(UPDATE_INTAKE), &c.intake)?
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_refs(INTAKE, &refs(&c.intake)))?;
    let Some(row) = row else {
        return Err(cas_miss(pool, INTAKE_VERSION, INTAKE, ws, id, version).await);
    };
    tx.commit().await.map_err(db(INTAKE))?;
    row.into_entity()
}
