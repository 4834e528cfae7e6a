//! The approval inbox and graduated auto-approval rules.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, WorkspaceId};
use crate::model::{ApprovalItem, ApprovalRule, ApprovalStatus, Channel, OutboxMessage};
use crate::store::{Inserted, Page, Scope};

/// What [`ApprovalStore::decide_approval`] stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalDecided {
    /// The item as stored.
    pub item: ApprovalItem,
    /// The message as stored, when one was given.
    pub message: Option<OutboxMessage>,
}

/// The approval inbox and graduated rules.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait ApprovalStore: Send + Sync + Debug {
    /// Adds an inbox item (`version` 1). One item per outbox message: if one exists it
    /// is returned unchanged with `created: false`. The outbox message must exist in the
    /// workspace (`InvalidReference`).
    async fn insert_approval(
        &self,
        item: &ApprovalItem,
    ) -> Result<Inserted<ApprovalItem>, StoreError>;

    /// [`insert_approval`](Self::insert_approval) for many items in ONE atomic step (a
    /// transaction; memory: under its lock), with the `approval.requested` event of
    /// each item it creates: the audit trail of a batch of auto-approvals in one
    /// commit. One answer per item, in order. Each item may name its own workspace.
    ///
    /// An item whose message already has one is answered with that item
    /// (`created: false`); so is a second item for the same message within the call
    /// (the first one given wins). Any item refused as `insert_approval` refuses it
    /// (invalid, a missing outbox message as `InvalidReference`, a reused id as
    /// `Conflict`) fails the whole call, storing nothing.
    async fn insert_approvals(
        &self,
        items: &[ApprovalItem],
    ) -> Result<Vec<Inserted<ApprovalItem>>, StoreError>;

    /// The item, or `NotFound`.
    async fn get_approval(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
    ) -> Result<ApprovalItem, StoreError>;

    /// The item of each outbox message, if one exists: one answer per id, in order (so
    /// exactly `outbox_message_ids.len()` answers; a repeated id is answered each time).
    /// A backend should answer in one round trip. The single-message form is
    /// [`ApprovalStoreExt::find_approval_for_outbox`](crate::store::ApprovalStoreExt::find_approval_for_outbox).
    async fn find_approvals_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_ids: &[OutboxMessageId],
    ) -> Result<Vec<Option<ApprovalItem>>, StoreError>;

    /// How many times in a row the template was approved without edits: among items
    /// with this `template_key` that are `Approved` or `Rejected`, newest decision first
    /// (`decided_at`, then id), the number of approved items with no `edited_body`
    /// before the first rejected or edited one. Expired, withdrawn and pending items do not count.
    async fn clean_approval_streak(
        &self,
        workspace_id: WorkspaceId,
        template_key: &str,
    ) -> Result<u32, StoreError>;

    /// Compare-and-set update (edits, context).
    async fn update_approval(&self, item: &ApprovalItem) -> Result<ApprovalItem, StoreError>;

    /// Records a decision atomically. Compare-and-set updates `item`, whose new status
    /// must be `Approved`, `Rejected` or `Expired` (else `Invalid`), and in the same step
    /// `message` when given: the item's own outbox message (else `Invalid`), updated by
    /// the rules of
    /// [`OutboxStore::update_outbox`](crate::store::OutboxStore::update_outbox) (for example released to `Pending`
    /// with the approved text, or `Cancelled` on rejection). Both are stored or neither.
    async fn decide_approval(
        &self,
        item: &ApprovalItem,
        message: Option<&OutboxMessage>,
    ) -> Result<ApprovalDecided, StoreError>;

    /// Items of the workspace, optionally with one status, ascending by id.
    async fn list_approvals(
        &self,
        workspace_id: WorkspaceId,
        status: Option<ApprovalStatus>,
        page: Page<ApprovalItemId>,
    ) -> Result<Vec<ApprovalItem>, StoreError>;

    /// Marks every `Pending` item in `scope` with `expires_at <= now` as `Expired`
    /// (version bumped, `updated_at = now`) and returns them, atomically per item.
    async fn expire_approvals(
        &self,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApprovalItem>, StoreError>;

    /// Inserts a rule (`version` 1); a reused id is `Conflict`.
    async fn insert_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError>;

    /// Compare-and-set update of a rule.
    async fn update_approval_rule(&self, rule: &ApprovalRule) -> Result<ApprovalRule, StoreError>;

    /// Rules of the workspace, optionally of one channel, ascending by id.
    async fn list_approval_rules(
        &self,
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
    ) -> Result<Vec<ApprovalRule>, StoreError>;

    /// The rule, or `NotFound`.
    async fn get_approval_rule(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalRuleId,
    ) -> Result<ApprovalRule, StoreError>;
}
