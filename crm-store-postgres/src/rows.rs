//! Row <-> entity mapping: one `FromRow` struct per table and its conversion into the
//! crm-core entity, plus the encoders for values that are not plain columns.
//!
//! Decoding never panics: an unknown enum name, a malformed address or JSON that does
//! not fit the entity is a `Backend` error naming the column.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::ids::{
    AccountId, ActivityId, AuditEntryId, ConsentId, ContactId, DealId, OutboxMessageId, PipelineId,
    StageId, SuppressionId, UserId, WorkspaceId,
};
use crm_core::model::{
    Account, Activity, Actor, AuditEntry, Consent, Contact, Deal, Lease, Pipeline, Suppression,
    parse_time_zone,
};
use crm_core::{Currency, Domain, EmailAddress, Money, PhoneNumber, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{corrupt, invalid, parse_text};

mod engine;

pub(crate) use engine::{
    AnomalyRow, ApprovalRow, ApprovalRuleRow, EnrollmentRow, EventRow, IntakeRow, JobRow,
    OutboxRow, SequenceRow,
};

/// A row type that converts into its entity.
pub(crate) trait IntoEntity {
    /// The crm-core entity.
    type Entity;
    /// Converts, failing with `Backend` on a value that does not decode.
    fn into_entity(self) -> Result<Self::Entity, StoreError>;
}

/// Converts every row.
pub(crate) fn entities<R: IntoEntity>(rows: Vec<R>) -> Result<Vec<R::Entity>, StoreError> {
    rows.into_iter().map(IntoEntity::into_entity).collect()
}

/// The column a batched lookup adds to each row: the 1-based position of the key it
/// answers (`unnest(...) WITH ORDINALITY`).
pub(crate) const BATCH_ORD: &str = "batch_ord";

/// Aligns the rows of a batched lookup with its `len` keys: one answer per key, in
/// order, `None` where no row answered.
pub(crate) fn aligned<R>(
    rows: &[sqlx::postgres::PgRow],
    len: usize,
) -> Result<Vec<Option<R::Entity>>, StoreError>
where
    R: IntoEntity + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    use sqlx::Row;
    let mut out: Vec<Option<R::Entity>> = std::iter::repeat_with(|| None).take(len).collect();
    for row in rows {
        let ord: i64 = row.try_get(BATCH_ORD).map_err(|e| corrupt(BATCH_ORD, e))?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| corrupt(BATCH_ORD, format!("position {ord} out of range")))?;
        let entity = R::from_row(row).map_err(|e| corrupt(BATCH_ORD, e))?;
        *slot = Some(entity.into_entity()?);
    }
    Ok(out)
}

/// Encodes a value as JSON for a jsonb column.
pub(crate) fn to_json<T: Serialize>(field: &'static str, value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| invalid(field, e.to_string()))
}

fn from_json<T: DeserializeOwned>(column: &'static str, value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| corrupt(column, e))
}

/// A `u32` as a bigint column.
pub(crate) fn opt_u32(value: Option<u32>) -> Option<i64> {
    value.map(i64::from)
}

fn to_u32(column: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|e| corrupt(column, e))
}

fn opt_to_u32(column: &'static str, value: Option<i64>) -> Result<Option<u32>, StoreError> {
    value.map(|v| to_u32(column, v)).transpose()
}

fn money(column: &'static str, minor: i64, currency: &str) -> Result<Money, StoreError> {
    let currency = Currency::new(currency).map_err(|e| corrupt(column, e))?;
    Money::new(minor, currency).map_err(|e| corrupt(column, e))
}

fn opt_text<T: std::str::FromStr<Err = crm_core::ValidationError>>(
    value: Option<String>,
) -> Result<Option<T>, StoreError> {
    value.as_deref().map(parse_text).transpose()
}

fn lease(owner: Option<String>, token: i64, expires_at: Option<DateTime<Utc>>) -> Option<Lease> {
    match (owner, expires_at) {
        (Some(owner), Some(expires_at)) => Some(Lease {
            owner,
            token,
            expires_at,
        }),
        _ => None,
    }
}

/// `contacts`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ContactRow {
    workspace_id: Uuid,
    id: Uuid,
    first_name: String,
    last_name: String,
    email: Option<String>,
    phone: Option<String>,
    title: Option<String>,
    account_id: Option<Uuid>,
    time_zone: Option<String>,
    linkedin_url: Option<String>,
    instagram_id: Option<String>,
    custom_fields: Value,
    owner_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for ContactRow {
    type Entity = Contact;
    fn into_entity(self) -> Result<Contact, StoreError> {
        let custom_fields: BTreeMap<String, String> =
            from_json("contacts.custom_fields", self.custom_fields)?;
        Ok(Contact {
            id: ContactId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            first_name: self.first_name,
            last_name: self.last_name,
            email: self
                .email
                .as_deref()
                .map(EmailAddress::parse)
                .transpose()
                .map_err(|e| corrupt("contacts.email", e))?,
            phone: self
                .phone
                .as_deref()
                .map(PhoneNumber::parse)
                .transpose()
                .map_err(|e| corrupt("contacts.phone", e))?,
            title: self.title,
            account_id: self.account_id.map(AccountId::from_uuid),
            time_zone: self
                .time_zone
                .as_deref()
                .map(parse_time_zone)
                .transpose()
                .map_err(|e| corrupt("contacts.time_zone", e))?,
            linkedin_url: self.linkedin_url,
            instagram_id: self.instagram_id,
            custom_fields,
            owner_id: self.owner_id.map(UserId::from_uuid),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `accounts`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRow {
    workspace_id: Uuid,
    id: Uuid,
    name: String,
    domain: Option<String>,
    industry: Option<String>,
    employee_count: Option<i64>,
    annual_revenue_minor: Option<i64>,
    annual_revenue_currency: Option<String>,
    owner_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for AccountRow {
    type Entity = Account;
    fn into_entity(self) -> Result<Account, StoreError> {
        let annual_revenue = match (self.annual_revenue_minor, self.annual_revenue_currency) {
            (Some(minor), Some(currency)) => {
                Some(money("accounts.annual_revenue", minor, &currency)?)
            }
            _ => None,
        };
        Ok(Account {
            id: AccountId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            name: self.name,
            domain: self
                .domain
                .as_deref()
                .map(Domain::parse)
                .transpose()
                .map_err(|e| corrupt("accounts.domain", e))?,
            industry: self.industry,
            employee_count: opt_to_u32("accounts.employee_count", self.employee_count)?,
            annual_revenue,
            owner_id: self.owner_id.map(UserId::from_uuid),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `pipelines`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PipelineRow {
    workspace_id: Uuid,
    id: Uuid,
    name: String,
    stages: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for PipelineRow {
    type Entity = Pipeline;
    fn into_entity(self) -> Result<Pipeline, StoreError> {
        Ok(Pipeline {
            id: PipelineId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            name: self.name,
            stages: from_json("pipelines.stages", self.stages)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `deals`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DealRow {
    workspace_id: Uuid,
    id: Uuid,
    pipeline_id: Uuid,
    stage_id: Uuid,
    name: String,
    amount_minor: i64,
    amount_currency: String,
    account_id: Option<Uuid>,
    contact_id: Option<Uuid>,
    owner_id: Option<Uuid>,
    expected_close: Option<NaiveDate>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl IntoEntity for DealRow {
    type Entity = Deal;
    fn into_entity(self) -> Result<Deal, StoreError> {
        Ok(Deal {
            id: DealId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            pipeline_id: PipelineId::from_uuid(self.pipeline_id),
            stage_id: StageId::from_uuid(self.stage_id),
            name: self.name,
            amount: money("deals.amount", self.amount_minor, &self.amount_currency)?,
            account_id: self.account_id.map(AccountId::from_uuid),
            contact_id: self.contact_id.map(ContactId::from_uuid),
            owner_id: self.owner_id.map(UserId::from_uuid),
            expected_close: self.expected_close,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// `activities`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ActivityRow {
    workspace_id: Uuid,
    id: Uuid,
    contact_id: Option<Uuid>,
    deal_id: Option<Uuid>,
    kind: String,
    channel: Option<String>,
    outbox_message_id: Option<Uuid>,
    summary: String,
    details: Value,
    occurred_at: DateTime<Utc>,
}

impl IntoEntity for ActivityRow {
    type Entity = Activity;
    fn into_entity(self) -> Result<Activity, StoreError> {
        Ok(Activity {
            id: ActivityId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            contact_id: self.contact_id.map(ContactId::from_uuid),
            deal_id: self.deal_id.map(DealId::from_uuid),
            kind: parse_text(&self.kind)?,
            channel: opt_text(self.channel)?,
            outbox_message_id: self.outbox_message_id.map(OutboxMessageId::from_uuid),
            summary: self.summary,
            details: self.details,
            occurred_at: self.occurred_at,
        })
    }
}

/// `consents`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConsentRow {
    workspace_id: Uuid,
    id: Uuid,
    contact_id: Uuid,
    channel: String,
    status: String,
    source: String,
    recorded_at: DateTime<Utc>,
}

impl IntoEntity for ConsentRow {
    type Entity = Consent;
    fn into_entity(self) -> Result<Consent, StoreError> {
        Ok(Consent {
            id: ConsentId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            contact_id: ContactId::from_uuid(self.contact_id),
            channel: parse_text(&self.channel)?,
            status: parse_text(&self.status)?,
            source: self.source,
            recorded_at: self.recorded_at,
        })
    }
}

/// `suppressions`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SuppressionRow {
    workspace_id: Uuid,
    id: Uuid,
    channel: Option<String>,
    address: String,
    reason: String,
    created_at: DateTime<Utc>,
}

impl IntoEntity for SuppressionRow {
    type Entity = Suppression;
    fn into_entity(self) -> Result<Suppression, StoreError> {
        Ok(Suppression {
            id: SuppressionId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            channel: opt_text(self.channel)?,
            address: self.address,
            reason: parse_text(&self.reason)?,
            created_at: self.created_at,
        })
    }
}

/// The `(actor_type, actor_id)` columns of an actor.
pub(crate) fn actor_columns(actor: &Actor) -> (&'static str, Option<Uuid>) {
    match actor {
        Actor::User(id) => ("user", Some(id.as_uuid())),
        Actor::System => ("system", None),
    }
}

/// `audit_entries`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    workspace_id: Uuid,
    id: Uuid,
    actor_type: String,
    actor_id: Option<Uuid>,
    action: String,
    subject: String,
    details: Value,
    at: DateTime<Utc>,
}

impl IntoEntity for AuditRow {
    type Entity = AuditEntry;
    fn into_entity(self) -> Result<AuditEntry, StoreError> {
        let actor = match (self.actor_type.as_str(), self.actor_id) {
            ("user", Some(id)) => Actor::User(UserId::from_uuid(id)),
            ("system", None) => Actor::System,
            (other, _) => return Err(corrupt("audit_entries.actor_type", other)),
        };
        Ok(AuditEntry {
            id: AuditEntryId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            actor,
            action: self.action,
            subject: self.subject,
            details: self.details,
            at: self.at,
        })
    }
}
