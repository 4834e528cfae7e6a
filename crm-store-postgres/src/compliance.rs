//! The consent ledger, the suppression list and the audit trail.

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::ids::{AuditEntryId, ContactId, SuppressionId, WorkspaceId};
use crm_core::model::{AuditEntry, Channel, Consent, Suppression, normalize_address};
use crm_core::store::{AuditStore, ComplianceStore, Inserted, Page, WithStopped};

use sqlx::{FromRow, Row};

use crate::PostgresStore;
use crate::error::{Ref, db, db_refs};
use crate::outbox::{lock_contact, stop_address, stop_contact};
use crate::page::{fetch_page, page_sql};
use crate::rows::{
    AuditRow, ConsentRow, IntoEntity, SuppressionRow, actor_columns, aligned, entities,
};

const CONSENT: &str = "consent";
const SUPPRESSION: &str = "suppression";
const AUDIT: &str = "audit_entry";

/// The current consent of each `(contact, channel)` key, by position.
const CURRENT_CONSENTS: &str = "
    SELECT DISTINCT ON (t.batch_ord) t.batch_ord, c.*
    FROM unnest($2::uuid[], $3::text[]) WITH ORDINALITY AS t(contact_id, channel, batch_ord)
    JOIN consents c
      ON c.workspace_id = $1 AND c.contact_id = t.contact_id AND c.channel = t.channel
    ORDER BY t.batch_ord, c.recorded_at DESC, c.id DESC";

/// The blocking suppression of each `(channel, address)` target, by position; the
/// all-channel entry wins as in `find_suppression`.
const FIND_SUPPRESSIONS: &str = "
    SELECT DISTINCT ON (t.batch_ord) t.batch_ord, s.*
    FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(channel, address, batch_ord)
    JOIN suppressions s
      ON s.workspace_id = $1 AND s.address = t.address
     AND (s.channel IS NULL OR s.channel = t.channel)
    ORDER BY t.batch_ord, (s.channel IS NULL) DESC";

/// Adds a suppression or returns the entry of the same `(channel, address)`;
/// `created` says which (`xmax = 0` only on a row this statement inserted).
const ADD_SUPPRESSION: &str = "
    INSERT INTO suppressions AS s (workspace_id, id, channel, address, reason, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (workspace_id, (coalesce(channel, '*')), address)
    DO UPDATE SET address = s.address
    RETURNING s.*, (s.xmax = 0) AS created";

#[async_trait]
impl ComplianceStore for PostgresStore {
    async fn record_consent(&self, consent: &Consent) -> Result<WithStopped<Consent>, StoreError> {
        consent.validate()?;
        let refs = [Ref::new(
            "consents_contact_fk",
            "contact",
            Some(consent.contact_id.as_uuid()),
        )];
        let ws = consent.workspace_id;
        let mut tx = self.pool.begin().await.map_err(db(CONSENT))?;
        lock_contact(&mut tx, ws, consent.contact_id).await?;
        let result = sqlx::query_as::<_, ConsentRow>(
            "INSERT INTO consents (workspace_id, id, contact_id, channel, status, source,
                 recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        )
        .bind(consent.workspace_id.as_uuid())
        .bind(consent.id.as_uuid())
        .bind(consent.contact_id.as_uuid())
        .bind(consent.channel.as_str())
        .bind(consent.status.as_str())
        .bind(consent.source.clone())
        .bind(consent.recorded_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_refs(CONSENT, &refs))?
        .into_entity()?;
        let stopped = stop_contact(
            &mut tx,
            ws,
            consent.contact_id,
            consent.channel,
            consent.recorded_at,
        )
        .await?;
        tx.commit().await.map_err(db(CONSENT))?;
        Ok(WithStopped { result, stopped })
    }

    async fn current_consents(
        &self,
        workspace_id: WorkspaceId,
        keys: &[(ContactId, Channel)],
    ) -> Result<Vec<Option<Consent>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (contacts, channels): (Vec<_>, Vec<_>) = keys
            .iter()
            .map(|(c, ch)| (c.as_uuid(), ch.as_str()))
            .unzip();
        let rows = sqlx::query(CURRENT_CONSENTS)
            .bind(workspace_id.as_uuid())
            .bind(contacts)
            .bind(channels)
            .fetch_all(&self.pool)
            .await
            .map_err(db(CONSENT))?;
        aligned::<ConsentRow>(&rows, keys.len())
    }

    async fn add_suppression(
        &self,
        suppression: &Suppression,
    ) -> Result<WithStopped<Inserted<Suppression>>, StoreError> {
        let mut row = suppression.clone();
        row.address = normalize_address(&row.address);
        row.validate()?;
        // One statement, so a racing `remove_suppression` is ordered before or after
        // it and never makes it fail: an existing entry is locked and returned (the
        // no-op update is what makes `RETURNING` see it), a fresh one is inserted.
        let mut tx = self.pool.begin().await.map_err(db(SUPPRESSION))?;
        let found = sqlx::query(ADD_SUPPRESSION)
            .bind(row.workspace_id.as_uuid())
            .bind(row.id.as_uuid())
            .bind(row.channel.map(|c| c.as_str()))
            .bind(row.address.as_str())
            .bind(row.reason.as_str())
            .bind(row.created_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(SUPPRESSION))?;
        let created: bool = found.try_get("created").map_err(db(SUPPRESSION))?;
        let value = SuppressionRow::from_row(&found)
            .map_err(db(SUPPRESSION))?
            .into_entity()?;
        let reason = format!("recipient is suppressed ({})", value.reason);
        let stopped = stop_address(
            &mut tx,
            value.workspace_id,
            value.channel,
            &value.address,
            &reason,
            value.created_at,
        )
        .await?;
        tx.commit().await.map_err(db(SUPPRESSION))?;
        Ok(WithStopped {
            result: Inserted { value, created },
            stopped,
        })
    }

    async fn find_suppressions(
        &self,
        workspace_id: WorkspaceId,
        targets: &[(Channel, &str)],
    ) -> Result<Vec<Option<Suppression>>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, addresses): (Vec<_>, Vec<_>) = targets
            .iter()
            .map(|&(ch, address)| (ch.as_str(), normalize_address(address)))
            .unzip();
        let rows = sqlx::query(FIND_SUPPRESSIONS)
            .bind(workspace_id.as_uuid())
            .bind(channels)
            .bind(addresses)
            .fetch_all(&self.pool)
            .await
            .map_err(db(SUPPRESSION))?;
        aligned::<SuppressionRow>(&rows, targets.len())
    }

    async fn remove_suppression(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
        address: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM suppressions
             WHERE workspace_id = $1 AND coalesce(channel, '*') = coalesce($2, '*')
               AND address = $3",
        )
        .bind(workspace_id.as_uuid())
        .bind(channel.map(|c| c.as_str()))
        .bind(normalize_address(address))
        .execute(&self.pool)
        .await
        .map_err(db(SUPPRESSION))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_suppressions(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SuppressionId>,
    ) -> Result<Vec<Suppression>, StoreError> {
        page.validate()?;
        fetch_page::<SuppressionRow>(
            &self.pool,
            page_sql!("suppressions"),
            workspace_id,
            page.after.map(|id| id.as_uuid()),
            page.limit,
            SUPPRESSION,
        )
        .await
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditEntry, StoreError> {
        entry.validate()?;
        let (actor_type, actor_id) = actor_columns(&entry.actor);
        sqlx::query_as::<_, AuditRow>(
            "INSERT INTO audit_entries (workspace_id, id, actor_type, actor_id, action, subject,
                 details, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(entry.workspace_id.as_uuid())
        .bind(entry.id.as_uuid())
        .bind(actor_type)
        .bind(actor_id)
        .bind(entry.action.clone())
        .bind(entry.subject.clone())
        .bind(entry.details.clone())
        .bind(entry.at)
        .fetch_one(&self.pool)
        .await
        .map_err(db(AUDIT))?
        .into_entity()
    }

    async fn list_audit(
        &self,
        workspace_id: WorkspaceId,
        subject: Option<&str>,
        page: Page<AuditEntryId>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        page.validate()?;
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_entries
             WHERE workspace_id = $1 AND ($2::text IS NULL OR subject = $2)
               AND ($3::uuid IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(workspace_id.as_uuid())
        .bind(subject)
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(AUDIT))?;
        entities(rows)
    }
}
