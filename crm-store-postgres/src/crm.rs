//! Contacts, accounts, pipelines and deals; activities in [`activities`].

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::address::{Domain, EmailAddress};
use crm_core::events;
use crm_core::ids::{AccountId, ContactId, DealId, PipelineId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{Account, Channel, Contact, Deal, Pipeline, normalize_address};
use crm_core::store::{AccountStore, ContactStore, DealStore, Page};

use crate::PostgresStore;
use crate::emit::lock_at_version;
use crate::error::{Ref, db, db_refs, invalid};
use crate::page::{fetch_page, page_sql};
use crate::queue::insert_events_in;
use crate::rows::{
    AccountRow, ContactRow, DealRow, IntoEntity, PipelineRow, aligned, entities, opt_u32, to_json,
};

mod activities;

pub(crate) const CONTACT: &str = "contact";
const ACCOUNT: &str = "account";

/// The contacts of a list of ids, each row with the position of its id.
const CONTACTS_BY_ID: &str = "
    SELECT k.batch_ord, c.*
    FROM unnest($2::uuid[]) WITH ORDINALITY AS k(id, batch_ord)
    JOIN contacts c ON c.workspace_id = $1 AND c.id = k.id";
const PIPELINE: &str = "pipeline";
const DEAL: &str = "deal";

pub(crate) const INSERT_CONTACT: &str = "
    INSERT INTO contacts (workspace_id, id, first_name, last_name, email, phone, title,
        account_id, time_zone, linkedin_url, instagram_id, custom_fields, owner_id,
        created_at, updated_at, version, email_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    RETURNING *";

pub(crate) const UPDATE_CONTACT: &str = "
    UPDATE contacts SET first_name = $3, last_name = $4, email = $5, phone = $6, title = $7,
        account_id = $8, time_zone = $9, linkedin_url = $10, instagram_id = $11,
        custom_fields = $12, owner_id = $13, updated_at = $15, version = version + 1,
        email_key = $17
    WHERE workspace_id = $1 AND id = $2 AND version = $16
    RETURNING *";

// Contacts by address, smallest id first when several share it; each has its index.
// `email_key` is `EmailAddress::normalized`, written by Rust (migration 0007).
const CONTACT_BY_EMAIL: &str = "SELECT * FROM contacts
    WHERE workspace_id = $1 AND email_key = $2 ORDER BY id LIMIT 1";
const CONTACT_BY_PHONE: &str = "SELECT * FROM contacts
    WHERE workspace_id = $1 AND phone = $2 ORDER BY id LIMIT 1";
const CONTACT_BY_INSTAGRAM: &str = "SELECT * FROM contacts
    WHERE workspace_id = $1 AND instagram_id = $2 ORDER BY id LIMIT 1";
const CONTACT_BY_LINKEDIN: &str = "SELECT * FROM contacts
    WHERE workspace_id = $1 AND linkedin_url = $2 ORDER BY id LIMIT 1";

pub(crate) const CONTACT_VERSION: &str =
    "SELECT version FROM contacts WHERE workspace_id = $1 AND id = $2";

/// The row an update replaces, locked until the update's transaction ends.
pub(crate) const LOCK_CONTACT: &str =
    "SELECT * FROM contacts WHERE workspace_id = $1 AND id = $2 FOR UPDATE";
const LOCK_ACCOUNT: &str = "SELECT * FROM accounts WHERE workspace_id = $1 AND id = $2 FOR UPDATE";
const LOCK_DEAL: &str = "SELECT * FROM deals WHERE workspace_id = $1 AND id = $2 FOR UPDATE";

const INSERT_ACCOUNT: &str = "
    INSERT INTO accounts (workspace_id, id, name, domain, industry, employee_count,
        annual_revenue_minor, annual_revenue_currency, owner_id, created_at, updated_at,
        version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    RETURNING *";

const UPDATE_ACCOUNT: &str = "
    UPDATE accounts SET name = $3, domain = $4, industry = $5, employee_count = $6,
        annual_revenue_minor = $7, annual_revenue_currency = $8, owner_id = $9,
        updated_at = $11, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND version = $12
    RETURNING *";

// A deal is written only if its stage belongs to its pipeline (pipelines are immutable).
const INSERT_DEAL: &str = "
    INSERT INTO deals (workspace_id, id, pipeline_id, stage_id, name, amount_minor,
        amount_currency, account_id, contact_id, owner_id, expected_close, created_at,
        updated_at, version)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
    WHERE EXISTS (SELECT 1 FROM pipelines p
                  WHERE p.workspace_id = $1 AND p.id = $3
                    AND p.stages @> jsonb_build_array(jsonb_build_object('id', $4::text)))
    RETURNING *";

const UPDATE_DEAL: &str = "
    UPDATE deals SET pipeline_id = $3, stage_id = $4, name = $5, amount_minor = $6,
        amount_currency = $7, account_id = $8, contact_id = $9, owner_id = $10,
        expected_close = $11, updated_at = $13, version = version + 1
    WHERE workspace_id = $1 AND id = $2 AND version = $14
      AND EXISTS (SELECT 1 FROM pipelines p
                  WHERE p.workspace_id = $1 AND p.id = $3
                    AND p.stages @> jsonb_build_array(jsonb_build_object('id', $4::text)))
    RETURNING *";

pub(crate) type PgQueryAs<'q, R> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

pub(crate) fn contact_refs(c: &Contact) -> [Ref; 1] {
    [Ref::new(
        "contacts_account_fk",
        ACCOUNT,
        c.account_id.map(|id| id.as_uuid()),
    )]
}

pub(crate) fn bind_contact<'q>(
    q: PgQueryAs<'q, ContactRow>,
    c: &Contact,
) -> Result<PgQueryAs<'q, ContactRow>, StoreError> {
    Ok(q.bind(c.workspace_id.as_uuid())
        .bind(c.id.as_uuid())
        .bind(c.first_name.clone())
        .bind(c.last_name.clone())
        .bind(c.email.as_ref().map(|e| e.as_str().to_owned()))
        .bind(c.phone.as_ref().map(|p| p.as_str().to_owned()))
        .bind(c.title.clone())
        .bind(c.account_id.map(|id| id.as_uuid()))
        .bind(c.time_zone.map(|tz| tz.name().to_owned()))
        .bind(c.linkedin_url.clone())
        .bind(c.instagram_id.clone())
        .bind(to_json("contact.custom_fields", &c.custom_fields)?)
        .bind(c.owner_id.map(|id| id.as_uuid()))
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.version)
        .bind(c.email.as_ref().map(EmailAddress::normalized)))
}

fn bind_account<'q>(q: PgQueryAs<'q, AccountRow>, a: &Account) -> PgQueryAs<'q, AccountRow> {
    q.bind(a.workspace_id.as_uuid())
        .bind(a.id.as_uuid())
        .bind(a.name.clone())
        .bind(a.domain.as_ref().map(|d| d.as_str().to_owned()))
        .bind(a.industry.clone())
        .bind(opt_u32(a.employee_count))
        .bind(a.annual_revenue.map(|m| m.minor_units()))
        .bind(a.annual_revenue.map(|m| m.currency().as_str().to_owned()))
        .bind(a.owner_id.map(|id| id.as_uuid()))
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(a.version)
}

fn deal_refs(d: &Deal) -> [Ref; 3] {
    [
        Ref::new("deals_pipeline_fk", PIPELINE, Some(d.pipeline_id.as_uuid())),
        Ref::new(
            "deals_account_fk",
            ACCOUNT,
            d.account_id.map(|id| id.as_uuid()),
        ),
        Ref::new(
            "deals_contact_fk",
            CONTACT,
            d.contact_id.map(|id| id.as_uuid()),
        ),
    ]
}

fn bind_deal<'q>(q: PgQueryAs<'q, DealRow>, d: &Deal) -> PgQueryAs<'q, DealRow> {
    q.bind(d.workspace_id.as_uuid())
        .bind(d.id.as_uuid())
        .bind(d.pipeline_id.as_uuid())
        .bind(d.stage_id.as_uuid())
        .bind(d.name.clone())
        .bind(d.amount.minor_units())
        .bind(d.amount.currency().as_str().to_owned())
        .bind(d.account_id.map(|id| id.as_uuid()))
        .bind(d.contact_id.map(|id| id.as_uuid()))
        .bind(d.owner_id.map(|id| id.as_uuid()))
        .bind(d.expected_close)
        .bind(d.created_at)
        .bind(d.updated_at)
        .bind(d.version)
}

impl PostgresStore {
    /// Why a deal write whose stage check failed changed nothing: the pipeline is
    /// missing (`InvalidReference`) or does not have the stage (`Invalid`).
    async fn deal_stage_error(&self, deal: &Deal) -> StoreError {
        let found = sqlx::query_scalar::<_, bool>(
            "SELECT stages @> jsonb_build_array(jsonb_build_object('id', $3::text))
             FROM pipelines WHERE workspace_id = $1 AND id = $2",
        )
        .bind(deal.workspace_id.as_uuid())
        .bind(deal.pipeline_id.as_uuid())
        .bind(deal.stage_id.as_uuid())
        .fetch_optional(&self.pool)
        .await;
        match found {
            Ok(None) => StoreError::invalid_reference(PIPELINE, deal.pipeline_id),
            Ok(Some(_)) => invalid("deal.stage_id", "the stage does not belong to the pipeline"),
            Err(e) => db(DEAL)(e),
        }
    }
}

#[async_trait]
impl ContactStore for PostgresStore {
    async fn insert_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        contact.validate()?;
        require_new_version(contact.version)?;
        let mut tx = self.pool.begin().await.map_err(db(CONTACT))?;
        let stored = bind_contact(sqlx::query_as(INSERT_CONTACT), contact)?
            .fetch_one(&mut *tx)
            .await
            .map_err(db_refs(CONTACT, &contact_refs(contact)))?
            .into_entity()?;
        insert_events_in(&mut tx, &[events::contact_created(&stored)?]).await?;
        tx.commit().await.map_err(db(CONTACT))?;
        Ok(stored)
    }

    async fn get_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Contact, StoreError> {
        sqlx::query_as::<_, ContactRow>(
            "SELECT * FROM contacts WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(CONTACT))?
        .ok_or_else(|| StoreError::not_found(CONTACT, id))?
        .into_entity()
    }

    async fn get_contacts(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<Option<Contact>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<_> = ids.iter().map(|id| id.as_uuid()).collect();
        let rows = sqlx::query(CONTACTS_BY_ID)
            .bind(workspace_id.as_uuid())
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(db(CONTACT))?;
        aligned::<ContactRow>(&rows, ids.len())
    }

    async fn find_contact_by_email(
        &self,
        workspace_id: WorkspaceId,
        email: &EmailAddress,
    ) -> Result<Option<Contact>, StoreError> {
        sqlx::query_as::<_, ContactRow>(
            "SELECT * FROM contacts WHERE workspace_id = $1 AND email_key = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(email.normalized())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(CONTACT))?
        .map(IntoEntity::into_entity)
        .transpose()
    }

    async fn find_contact_by_address(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Contact>, StoreError> {
        let sql = match channel {
            Channel::Email | Channel::CalCom => CONTACT_BY_EMAIL,
            Channel::WhatsApp | Channel::Sms => CONTACT_BY_PHONE,
            Channel::Instagram => CONTACT_BY_INSTAGRAM,
            Channel::LinkedIn => CONTACT_BY_LINKEDIN,
            // A task has no address; a channel added later finds nobody until it is
            // mapped here.
            _ => return Ok(None),
        };
        // Stored phones are E.164 (PhoneNumber, contacts_phone_e164_check), which
        // normalize_address leaves as is; for an email it gives the `email_key` form
        // (crm_core::address::normalize_email). Instagram ids and LinkedIn URLs are
        // compared exactly.
        let address = match channel {
            Channel::Instagram | Channel::LinkedIn => address.to_owned(),
            _ => normalize_address(address),
        };
        sqlx::query_as::<_, ContactRow>(sql)
            .bind(workspace_id.as_uuid())
            .bind(address)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(CONTACT))?
            .map(IntoEntity::into_entity)
            .transpose()
    }

    async fn update_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        contact.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(CONTACT))?;
        let before = lock_at_version::<ContactRow, _>(
            &mut tx,
            LOCK_CONTACT,
            CONTACT,
            contact.workspace_id,
            contact.id.as_uuid(),
            contact.version,
            |c: &Contact| c.version,
        )
        .await?;
        // The row is locked at the expected version, so the update matches it.
        let after = bind_contact(sqlx::query_as(UPDATE_CONTACT), contact)?
            .fetch_one(&mut *tx)
            .await
            .map_err(db_refs(CONTACT, &contact_refs(contact)))?
            .into_entity()?;
        insert_events_in(&mut tx, &[events::contact_updated(&before, &after)?]).await?;
        tx.commit().await.map_err(db(CONTACT))?;
        Ok(after)
    }

    async fn list_contacts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError> {
        page.validate()?;
        fetch_page::<ContactRow>(
            &self.pool,
            page_sql!("contacts"),
            workspace_id,
            page.after.map(|id| id.as_uuid()),
            page.limit,
            CONTACT,
        )
        .await
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn insert_account(&self, account: &Account) -> Result<Account, StoreError> {
        account.validate()?;
        require_new_version(account.version)?;
        let mut tx = self.pool.begin().await.map_err(db(ACCOUNT))?;
        let stored = bind_account(sqlx::query_as(INSERT_ACCOUNT), account)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(ACCOUNT))?
            .into_entity()?;
        insert_events_in(&mut tx, &[events::account_saved(&stored)?]).await?;
        tx.commit().await.map_err(db(ACCOUNT))?;
        Ok(stored)
    }

    async fn get_account(
        &self,
        workspace_id: WorkspaceId,
        id: AccountId,
    ) -> Result<Account, StoreError> {
        sqlx::query_as::<_, AccountRow>(
            "SELECT * FROM accounts WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(ACCOUNT))?
        .ok_or_else(|| StoreError::not_found(ACCOUNT, id))?
        .into_entity()
    }

    async fn find_account_by_domain(
        &self,
        workspace_id: WorkspaceId,
        domain: &Domain,
    ) -> Result<Option<Account>, StoreError> {
        sqlx::query_as::<_, AccountRow>(
            "SELECT * FROM accounts WHERE workspace_id = $1 AND domain = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(domain.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(ACCOUNT))?
        .map(IntoEntity::into_entity)
        .transpose()
    }

    async fn update_account(&self, account: &Account) -> Result<Account, StoreError> {
        account.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(ACCOUNT))?;
        lock_at_version::<AccountRow, _>(
            &mut tx,
            LOCK_ACCOUNT,
            ACCOUNT,
            account.workspace_id,
            account.id.as_uuid(),
            account.version,
            |a: &Account| a.version,
        )
        .await?;
        let stored = bind_account(sqlx::query_as(UPDATE_ACCOUNT), account)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(ACCOUNT))?
            .into_entity()?;
        insert_events_in(&mut tx, &[events::account_saved(&stored)?]).await?;
        tx.commit().await.map_err(db(ACCOUNT))?;
        Ok(stored)
    }

    async fn list_accounts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<AccountId>,
    ) -> Result<Vec<Account>, StoreError> {
        page.validate()?;
        fetch_page::<AccountRow>(
            &self.pool,
            page_sql!("accounts"),
            workspace_id,
            page.after.map(|id| id.as_uuid()),
            page.limit,
            ACCOUNT,
        )
        .await
    }
}

#[async_trait]
impl DealStore for PostgresStore {
    async fn insert_pipeline(&self, pipeline: &Pipeline) -> Result<Pipeline, StoreError> {
        pipeline.validate()?;
        require_new_version(pipeline.version)?;
        sqlx::query_as::<_, PipelineRow>(
            "INSERT INTO pipelines (workspace_id, id, name, stages, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        )
        .bind(pipeline.workspace_id.as_uuid())
        .bind(pipeline.id.as_uuid())
        .bind(pipeline.name.clone())
        .bind(to_json("pipeline.stages", &pipeline.stages)?)
        .bind(pipeline.created_at)
        .bind(pipeline.updated_at)
        .bind(pipeline.version)
        .fetch_one(&self.pool)
        .await
        .map_err(db(PIPELINE))?
        .into_entity()
    }

    async fn get_pipeline(
        &self,
        workspace_id: WorkspaceId,
        id: PipelineId,
    ) -> Result<Pipeline, StoreError> {
        sqlx::query_as::<_, PipelineRow>(
            "SELECT * FROM pipelines WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(PIPELINE))?
        .ok_or_else(|| StoreError::not_found(PIPELINE, id))?
        .into_entity()
    }

    async fn list_pipelines(&self, workspace_id: WorkspaceId) -> Result<Vec<Pipeline>, StoreError> {
        let rows = sqlx::query_as::<_, PipelineRow>(
            "SELECT * FROM pipelines WHERE workspace_id = $1 ORDER BY id",
        )
        .bind(workspace_id.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db(PIPELINE))?;
        entities(rows)
    }

    async fn insert_deal(&self, deal: &Deal) -> Result<Deal, StoreError> {
        deal.validate()?;
        require_new_version(deal.version)?;
        let mut tx = self.pool.begin().await.map_err(db(DEAL))?;
        let row = bind_deal(sqlx::query_as(INSERT_DEAL), deal)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(DEAL, &deal_refs(deal)))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.deal_stage_error(deal).await);
        };
        let stored = row.into_entity()?;
        insert_events_in(&mut tx, &events::deal_saved(None, &stored)?).await?;
        tx.commit().await.map_err(db(DEAL))?;
        Ok(stored)
    }

    async fn get_deal(&self, workspace_id: WorkspaceId, id: DealId) -> Result<Deal, StoreError> {
        sqlx::query_as::<_, DealRow>("SELECT * FROM deals WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(DEAL))?
            .ok_or_else(|| StoreError::not_found(DEAL, id))?
            .into_entity()
    }

    async fn update_deal(&self, deal: &Deal) -> Result<Deal, StoreError> {
        deal.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(DEAL))?;
        let before = lock_at_version::<DealRow, _>(
            &mut tx,
            LOCK_DEAL,
            DEAL,
            deal.workspace_id,
            deal.id.as_uuid(),
            deal.version,
            |d: &Deal| d.version,
        )
        .await?;
        let row = bind_deal(sqlx::query_as(UPDATE_DEAL), deal)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_refs(DEAL, &deal_refs(deal)))?;
        // At the expected version, only the stage check can make the update miss.
        let Some(row) = row else {
            drop(tx);
            return Err(self.deal_stage_error(deal).await);
        };
        let after = row.into_entity()?;
        insert_events_in(&mut tx, &events::deal_saved(Some(&before), &after)?).await?;
        tx.commit().await.map_err(db(DEAL))?;
        Ok(after)
    }

    async fn list_deals(
        &self,
        workspace_id: WorkspaceId,
        pipeline_id: Option<PipelineId>,
        page: Page<DealId>,
    ) -> Result<Vec<Deal>, StoreError> {
        page.validate()?;
        let rows = sqlx::query_as::<_, DealRow>(
            "SELECT * FROM deals WHERE workspace_id = $1
               AND ($2::uuid IS NULL OR pipeline_id = $2) AND ($3::uuid IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(workspace_id.as_uuid())
        .bind(pipeline_id.map(|id| id.as_uuid()))
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(DEAL))?;
        entities(rows)
    }
}
