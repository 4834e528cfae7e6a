//! Contacts, accounts, pipelines, deals and activities.

use std::cmp::Reverse;

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::address::{Domain, EmailAddress};
use crm_core::events;
use crm_core::ids::{AccountId, ContactId, DealId, PipelineId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{Account, Activity, Channel, Contact, Deal, Pipeline, normalize_address};
use crm_core::store::{
    AccountStore, ActivityFilter, ActivityStore, ContactStore, DealStore, Page, validate_limit,
};
use crm_core::{ValidationError, model};

use crate::queue::append_changes;
use crate::table::{Row, Table, Unique, cloned, limit};
use crate::{MemoryStore, Tables};

/// The CRM record tables.
#[derive(Default)]
pub(crate) struct CrmTables {
    pub(crate) contacts: Table<Contact>,
    /// Lower-cased email -> contact.
    contact_emails: Unique<String, ContactId>,
    pub(crate) accounts: Table<Account>,
    /// Domain (already lower-case) -> account.
    account_domains: Unique<String, AccountId>,
    pipelines: Table<Pipeline>,
    pub(crate) deals: Table<Deal>,
    pub(crate) activities: Table<Activity>,
}

impl CrmTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("contacts", self.contacts.len()),
            ("accounts", self.accounts.len()),
            ("pipelines", self.pipelines.len()),
            ("deals", self.deals.len()),
            ("activities", self.activities.len()),
        ]);
    }

    /// Checks and stores a new or changed contact; `old` is the stored row on update.
    fn write_contact(
        &mut self,
        row: Contact,
        old_email: Option<String>,
    ) -> Result<Contact, StoreError> {
        let ws = row.workspace_id;
        let email = row.email.as_ref().map(EmailAddress::normalized);
        // Uniqueness before references, as PostgreSQL checks a unique index on insert
        // and foreign keys only at the end of the statement.
        self.contact_emails
            .check(ws, email.as_ref(), row.id, "email")?;
        self.accounts.ensure_ref(ws, row.account_id)?;
        self.contact_emails.replace(ws, old_email, email, row.id);
        Ok(self.contacts.put(row).clone())
    }

    /// Checks and stores a new or changed account.
    fn write_account(
        &mut self,
        row: Account,
        old_domain: Option<String>,
    ) -> Result<Account, StoreError> {
        let ws = row.workspace_id;
        let domain = row.domain.as_ref().map(|d| d.as_str().to_owned());
        self.account_domains
            .check(ws, domain.as_ref(), row.id, "domain")?;
        self.account_domains.replace(ws, old_domain, domain, row.id);
        Ok(self.accounts.put(row).clone())
    }

    /// Checks a deal's references and stage, then stores it.
    fn write_deal(&mut self, row: Deal) -> Result<Deal, StoreError> {
        let ws = row.workspace_id;
        let pipeline = self
            .pipelines
            .get(ws, row.pipeline_id)
            .ok_or_else(|| StoreError::invalid_reference(PipelineId::ENTITY, row.pipeline_id))?;
        if pipeline.stage(row.stage_id).is_none() {
            return Err(ValidationError::new(
                "deal.stage_id",
                "the stage does not belong to the deal's pipeline",
            )
            .into());
        }
        self.accounts.ensure_ref(ws, row.account_id)?;
        self.contacts.ensure_ref(ws, row.contact_id)?;
        Ok(self.deals.put(row).clone())
    }

    /// Checks an activity's id and references, then stores it. Shared with the outbox,
    /// which records the send activity in the same step.
    pub(crate) fn check_activity(&self, activity: &Activity) -> Result<(), StoreError> {
        activity.validate()?;
        let ws = activity.workspace_id;
        self.activities.ensure_vacant(activity)?;
        self.contacts.ensure_ref(ws, activity.contact_id)?;
        self.deals.ensure_ref(ws, activity.deal_id)
    }

    /// Stores an activity that passed [`Self::check_activity`].
    pub(crate) fn put_activity(&mut self, activity: Activity) -> Activity {
        self.activities.put(activity).clone()
    }
}

fn matches(filter: &ActivityFilter, a: &Activity) -> bool {
    filter.contact_id.is_none_or(|c| a.contact_id == Some(c))
        && filter.deal_id.is_none_or(|d| a.deal_id == Some(d))
        && (filter.kinds.is_empty() || filter.kinds.contains(&a.kind))
        && filter.channel.is_none_or(|c| a.channel == Some(c))
        && filter.since.is_none_or(|s| a.occurred_at >= s)
        && filter.until.is_none_or(|u| a.occurred_at < u)
}

/// The contact reachable at `address` on `channel` (see
/// [`ContactStore::find_contact_by_address`]); the smallest id wins when several share it.
fn find_by_address(
    t: &Tables,
    ws: WorkspaceId,
    channel: Channel,
    address: &str,
) -> Option<Contact> {
    let contacts = &t.crm.contacts;
    match channel {
        // Emails are unique per workspace, so the index holds the only match.
        Channel::Email | Channel::CalCom => t
            .crm
            .contact_emails
            .get(ws, normalize_address(address).as_str())
            .and_then(|id| contacts.get(ws, id))
            .cloned(),
        Channel::WhatsApp | Channel::Sms => {
            let wanted = normalize_address(address);
            contacts
                .rows(ws)
                .find(|c| {
                    c.phone
                        .as_ref()
                        .is_some_and(|p| normalize_address(p.as_str()) == wanted)
                })
                .cloned()
        }
        Channel::Instagram => contacts
            .rows(ws)
            .find(|c| c.instagram_id.as_deref() == Some(address))
            .cloned(),
        Channel::LinkedIn => contacts
            .rows(ws)
            .find(|c| c.linkedin_url.as_deref() == Some(address))
            .cloned(),
        // `ManualTask` and channels this store does not know have no address.
        _ => None,
    }
}

/// Stores a new contact without its event: intake writes its own `contact.created`
/// with the contact (see `complete_intake`).
pub(crate) fn insert_contact_row(t: &mut Tables, contact: &Contact) -> Result<Contact, StoreError> {
    contact.validate()?;
    require_new_version(contact.version)?;
    t.crm.contacts.ensure_vacant(contact)?;
    t.crm.write_contact(contact.clone(), None)
}

/// Stores a contact update without its event: intake writes its own
/// `contact.merged` with the contact (see `complete_intake`).
pub(crate) fn update_contact_row(
    t: &mut Tables,
    contact: &Contact,
) -> Result<(Contact, Contact), StoreError> {
    contact.validate()?;
    let (row, old) = t.crm.contacts.cas(contact)?;
    let old = old.clone();
    let old_email = old.email.as_ref().map(EmailAddress::normalized);
    Ok((old, t.crm.write_contact(row, old_email)?))
}

fn insert_contact(t: &mut Tables, contact: &Contact) -> Result<Contact, StoreError> {
    let event = events::contact_created(contact)?;
    let stored = insert_contact_row(t, contact)?;
    append_changes(t, &[event]);
    Ok(stored)
}

fn update_contact(t: &mut Tables, contact: &Contact) -> Result<Contact, StoreError> {
    // The event is built from the row `cas` would store, before anything is written.
    contact.validate()?;
    let (next, old) = t.crm.contacts.cas(contact)?;
    let event = events::contact_updated(old, &next)?;
    let (_, stored) = update_contact_row(t, contact)?;
    append_changes(t, &[event]);
    Ok(stored)
}

fn insert_account(t: &mut Tables, account: &Account) -> Result<Account, StoreError> {
    account.validate()?;
    require_new_version(account.version)?;
    t.crm.accounts.ensure_vacant(account)?;
    let event = events::account_saved(account)?;
    let stored = t.crm.write_account(account.clone(), None)?;
    append_changes(t, &[event]);
    Ok(stored)
}

fn update_account(t: &mut Tables, account: &Account) -> Result<Account, StoreError> {
    account.validate()?;
    let (row, old) = t.crm.accounts.cas(account)?;
    let old_domain = old.domain.as_ref().map(|d| d.as_str().to_owned());
    let event = events::account_saved(&row)?;
    let stored = t.crm.write_account(row, old_domain)?;
    append_changes(t, &[event]);
    Ok(stored)
}

fn insert_deal(t: &mut Tables, deal: &Deal) -> Result<Deal, StoreError> {
    deal.validate()?;
    require_new_version(deal.version)?;
    t.crm.deals.ensure_vacant(deal)?;
    let saved = events::deal_saved(None, deal)?;
    let stored = t.crm.write_deal(deal.clone())?;
    append_changes(t, &saved);
    Ok(stored)
}

fn update_deal(t: &mut Tables, deal: &Deal) -> Result<Deal, StoreError> {
    deal.validate()?;
    let (row, old) = t.crm.deals.cas(deal)?;
    let saved = events::deal_saved(Some(old), &row)?;
    let stored = t.crm.write_deal(row)?;
    append_changes(t, &saved);
    Ok(stored)
}

/// Records an activity with its `activity.logged` event.
pub(crate) fn record_activity(t: &mut Tables, activity: &Activity) -> Result<Activity, StoreError> {
    t.crm.check_activity(activity)?;
    let event = events::activity_logged(activity)?;
    let stored = t.crm.put_activity(activity.clone());
    append_changes(t, &[event]);
    Ok(stored)
}

#[async_trait]
impl ContactStore for MemoryStore {
    async fn insert_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        self.with(|t| insert_contact(t, contact))
    }

    async fn get_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Contact, StoreError> {
        self.with(|t| t.crm.contacts.find(workspace_id, id).cloned())
    }

    async fn get_contacts(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<Option<Contact>>, StoreError> {
        self.with(|t| {
            Ok(ids
                .iter()
                .map(|id| t.crm.contacts.get(workspace_id, *id).cloned())
                .collect())
        })
    }

    async fn find_contact_by_email(
        &self,
        workspace_id: WorkspaceId,
        email: &EmailAddress,
    ) -> Result<Option<Contact>, StoreError> {
        let key = email.normalized();
        self.with(|t| {
            Ok(t.crm
                .contact_emails
                .get(workspace_id, key.as_str())
                .and_then(|id| t.crm.contacts.get(workspace_id, id))
                .cloned())
        })
    }

    async fn find_contact_by_address(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Contact>, StoreError> {
        Ok(self.with(|t| find_by_address(t, workspace_id, channel, address)))
    }

    async fn update_contact(&self, contact: &Contact) -> Result<Contact, StoreError> {
        self.with(|t| update_contact(t, contact))
    }

    async fn list_contacts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError> {
        self.with(|t| cloned(t.crm.contacts.page(workspace_id, &page, |_| true)))
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn insert_account(&self, account: &Account) -> Result<Account, StoreError> {
        self.with(|t| insert_account(t, account))
    }

    async fn get_account(
        &self,
        workspace_id: WorkspaceId,
        id: AccountId,
    ) -> Result<Account, StoreError> {
        self.with(|t| t.crm.accounts.find(workspace_id, id).cloned())
    }

    async fn find_account_by_domain(
        &self,
        workspace_id: WorkspaceId,
        domain: &Domain,
    ) -> Result<Option<Account>, StoreError> {
        self.with(|t| {
            Ok(t.crm
                .account_domains
                .get(workspace_id, domain.as_str())
                .and_then(|id| t.crm.accounts.get(workspace_id, id))
                .cloned())
        })
    }

    async fn update_account(&self, account: &Account) -> Result<Account, StoreError> {
        self.with(|t| update_account(t, account))
    }

    async fn list_accounts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<AccountId>,
    ) -> Result<Vec<Account>, StoreError> {
        self.with(|t| cloned(t.crm.accounts.page(workspace_id, &page, |_| true)))
    }
}

#[async_trait]
impl DealStore for MemoryStore {
    async fn insert_pipeline(&self, pipeline: &Pipeline) -> Result<Pipeline, StoreError> {
        pipeline.validate()?;
        require_new_version(pipeline.version)?;
        self.with(|t| {
            t.crm.pipelines.ensure_vacant(pipeline)?;
            Ok(t.crm.pipelines.put(pipeline.clone()).clone())
        })
    }

    async fn get_pipeline(
        &self,
        workspace_id: WorkspaceId,
        id: PipelineId,
    ) -> Result<Pipeline, StoreError> {
        self.with(|t| t.crm.pipelines.find(workspace_id, id).cloned())
    }

    async fn list_pipelines(&self, workspace_id: WorkspaceId) -> Result<Vec<Pipeline>, StoreError> {
        self.with(|t| Ok(t.crm.pipelines.rows(workspace_id).cloned().collect()))
    }

    async fn insert_deal(&self, deal: &Deal) -> Result<Deal, StoreError> {
        self.with(|t| insert_deal(t, deal))
    }

    async fn get_deal(&self, workspace_id: WorkspaceId, id: DealId) -> Result<Deal, StoreError> {
        self.with(|t| t.crm.deals.find(workspace_id, id).cloned())
    }

    async fn update_deal(&self, deal: &Deal) -> Result<Deal, StoreError> {
        self.with(|t| update_deal(t, deal))
    }

    async fn list_deals(
        &self,
        workspace_id: WorkspaceId,
        pipeline_id: Option<PipelineId>,
        page: Page<DealId>,
    ) -> Result<Vec<Deal>, StoreError> {
        self.with(|t| {
            cloned(t.crm.deals.page(workspace_id, &page, |d| {
                pipeline_id.is_none_or(|p| d.pipeline_id == p)
            }))
        })
    }
}

#[async_trait]
impl ActivityStore for MemoryStore {
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError> {
        self.with(|t| record_activity(t, activity))
    }

    async fn list_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
        limit_rows: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        validate_limit(limit_rows)?;
        self.with(|t| {
            let mut rows: Vec<&model::Activity> = t
                .crm
                .activities
                .rows(workspace_id)
                .filter(|a| matches(filter, a))
                .collect();
            rows.sort_unstable_by_key(|a| Reverse((a.occurred_at, a.id())));
            Ok(rows.into_iter().take(limit(limit_rows)).cloned().collect())
        })
    }

    async fn count_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
    ) -> Result<u64, StoreError> {
        self.with(|t| {
            let n = t
                .crm
                .activities
                .rows(workspace_id)
                .filter(|a| matches(filter, a))
                .count();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }
}
