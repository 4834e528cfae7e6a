//! Repositories of the CRM records: contacts, accounts, pipelines and deals, activities.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::address::{Domain, EmailAddress};
use crate::error::StoreError;
use crate::ids::{AccountId, ContactId, DealId, PipelineId, WorkspaceId};
use crate::model::{Account, Activity, ActivityKind, Channel, Contact, Deal, Pipeline};
use crate::store::Page;

/// Contacts.
///
/// # Contract (every method)
/// - Rows of another workspace are invisible: reads return `NotFound`/`None`, writes
///   return `NotFound` and change nothing.
/// - Writes call [`Contact::validate`] first and return `Invalid` on failure.
#[async_trait]
pub trait ContactStore: Send + Sync + Debug {
    /// Inserts a new contact.
    ///
    /// MUST reject `version != 1` with `Invalid`; an `account_id` that does not exist in
    /// the same workspace with `InvalidReference`; an email already used by another
    /// contact of the workspace (compared case-insensitively) or a reused id with
    /// `Conflict`. Returns the stored row.
    async fn insert_contact(&self, contact: &Contact) -> Result<Contact, StoreError>;

    /// The contact `id` of `workspace_id`, or `NotFound`.
    async fn get_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Contact, StoreError>;

    /// The contacts `ids` of `workspace_id`: one answer per id, in order (repeats
    /// included), `None` for an id the workspace has no contact of. One consistent read;
    /// a backend should answer in one round trip (the runner reads a page's contacts
    /// with it). No ids, no answers.
    async fn get_contacts(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<Option<Contact>>, StoreError>;

    /// The contact whose email equals `email` case-insensitively, if any.
    async fn find_contact_by_email(
        &self,
        workspace_id: WorkspaceId,
        email: &EmailAddress,
    ) -> Result<Option<Contact>, StoreError>;

    /// The contact reachable at `address` on `channel`: by email (case-insensitive) for
    /// `Email` and `CalCom`, by phone for `WhatsApp` and `Sms` (after
    /// [`normalize_address`](crate::model::normalize_address)), by `instagram_id` for
    /// `Instagram`, by `linkedin_url` for `LinkedIn`; `ManualTask` has no address and
    /// finds nothing. When several contacts share the address, the one with the
    /// smallest id is returned.
    async fn find_contact_by_address(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Contact>, StoreError>;

    /// Compare-and-set update. Succeeds only if the stored version equals
    /// `contact.version`; then stores every field with `version + 1` and returns the
    /// stored row. A stale version is `VersionConflict` (with the stored version); the
    /// same reference and uniqueness rules as insert apply. `created_at` is kept.
    async fn update_contact(&self, contact: &Contact) -> Result<Contact, StoreError>;

    /// Contacts of the workspace in ascending id order (see [`Page`]).
    async fn list_contacts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError>;
}

/// Accounts (companies).
///
/// # Contract
/// Tenant scoping and validation as for [`ContactStore`].
#[async_trait]
pub trait AccountStore: Send + Sync + Debug {
    /// Inserts a new account. `version` must be 1; a domain already used by another
    /// account of the workspace, or a reused id, is `Conflict`.
    async fn insert_account(&self, account: &Account) -> Result<Account, StoreError>;

    /// The account, or `NotFound`.
    async fn get_account(
        &self,
        workspace_id: WorkspaceId,
        id: AccountId,
    ) -> Result<Account, StoreError>;

    /// The account with this domain, if any.
    async fn find_account_by_domain(
        &self,
        workspace_id: WorkspaceId,
        domain: &Domain,
    ) -> Result<Option<Account>, StoreError>;

    /// Compare-and-set update, as [`ContactStore::update_contact`].
    async fn update_account(&self, account: &Account) -> Result<Account, StoreError>;

    /// Accounts in ascending id order.
    async fn list_accounts(
        &self,
        workspace_id: WorkspaceId,
        page: Page<AccountId>,
    ) -> Result<Vec<Account>, StoreError>;
}

/// Pipelines and deals.
///
/// # Contract
/// Tenant scoping and validation as for [`ContactStore`].
#[async_trait]
pub trait DealStore: Send + Sync + Debug {
    /// Inserts a pipeline with its stages. `version` must be 1; a reused id is `Conflict`.
    async fn insert_pipeline(&self, pipeline: &Pipeline) -> Result<Pipeline, StoreError>;

    /// The pipeline, or `NotFound`.
    async fn get_pipeline(
        &self,
        workspace_id: WorkspaceId,
        id: PipelineId,
    ) -> Result<Pipeline, StoreError>;

    /// Every pipeline of the workspace, ascending by id.
    async fn list_pipelines(&self, workspace_id: WorkspaceId) -> Result<Vec<Pipeline>, StoreError>;

    /// Inserts a deal. `version` must be 1. The pipeline, the account and the contact
    /// must exist in the same workspace (`InvalidReference`), and the stage must belong
    /// to the pipeline (`Invalid`).
    async fn insert_deal(&self, deal: &Deal) -> Result<Deal, StoreError>;

    /// The deal, or `NotFound`.
    async fn get_deal(&self, workspace_id: WorkspaceId, id: DealId) -> Result<Deal, StoreError>;

    /// Compare-and-set update with the same checks as insert.
    async fn update_deal(&self, deal: &Deal) -> Result<Deal, StoreError>;

    /// Deals of the workspace, optionally of one pipeline, ascending by id.
    async fn list_deals(
        &self,
        workspace_id: WorkspaceId,
        pipeline_id: Option<PipelineId>,
        page: Page<DealId>,
    ) -> Result<Vec<Deal>, StoreError>;
}

/// Which activities to list or count. Every present condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityFilter {
    /// Only this contact's.
    pub contact_id: Option<ContactId>,
    /// Only this deal's.
    pub deal_id: Option<DealId>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<ActivityKind>,
    /// Only this channel.
    pub channel: Option<Channel>,
    /// Only those that occurred at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only those that occurred before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// The activity timeline.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`]; activities are immutable once recorded.
#[async_trait]
pub trait ActivityStore: Send + Sync + Debug {
    /// Records an activity. The contact and deal, when set, must exist in the same
    /// workspace (`InvalidReference`); a reused id is `Conflict`.
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError>;

    /// Matching activities, newest first (by `occurred_at`, then id), at most `limit`
    /// (1 to 1000).
    async fn list_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
        limit: u32,
    ) -> Result<Vec<Activity>, StoreError>;

    /// How many activities match.
    async fn count_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
    ) -> Result<u64, StoreError>;
}
