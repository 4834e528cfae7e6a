//! The outbox and the approval inbox.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, WorkspaceId};
use crate::model::{
    Activity, ApprovalItem, ApprovalRule, ApprovalStatus, Channel, Enrollment, OutboxMessage,
    OutboxStatus,
};
use crate::store::{Claim, Inserted, Page, Scope};

/// What the dispatcher records when a provider accepted a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRecord {
    /// The provider's message id, if it returned one.
    pub provider_message_id: Option<String>,
    /// When the provider accepted it.
    pub sent_at: DateTime<Utc>,
    /// The timeline entry written in the same atomic step.
    pub activity: Activity,
    /// The message's enrollment moved on (step sent), written in the same atomic step
    /// with compare-and-set. If its version no longer matches (the contact replied in
    /// the meantime, say) it is skipped without error: the send happened and is recorded
    /// regardless.
    pub enrollment: Option<Enrollment>,
}

/// Putting an in-flight message back to `Pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reschedule {
    /// The earliest next send time.
    pub not_before: DateTime<Utc>,
    /// Why (a provider error, "quota exhausted", ...).
    pub reason: Option<String>,
    /// `false` when the claim did not reach the provider (window, quota), so the
    /// claim's attempt is given back.
    pub count_attempt: bool,
}

/// What [`ApprovalStore::decide_approval`] stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalDecided {
    /// The item as stored.
    pub item: ApprovalItem,
    /// The message as stored, when one was given.
    pub message: Option<OutboxMessage>,
}

/// Outbound messages and their single send path.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). Every change of a
/// message bumps its `version`, claims and completions included. Lease-checked methods
/// return `LeaseLost` unless the message is `InFlight` with exactly the given fencing
/// token; the token, not the clock, decides (an expired lease that nobody re-claimed
/// can still be completed).
///
/// # Clock skew
/// Dispatchers whose clocks differ by up to
/// [`MAX_CLOCK_SKEW`](crate::store::MAX_CLOCK_SKEW) MUST never hold the same message at
/// once. A claim's lease runs until the claimer's `now + lease_ttl`; an `InFlight`
/// message is never claimable, and [`reap_outbox_leases`](Self::reap_outbox_leases)
/// MUST NOT return it to `Pending` before the reaper's `now` reaches
/// `expires_at + MAX_CLOCK_SKEW`, so a reaper whose clock runs ahead cannot free a
/// lease the claimer still holds by its own clock. Expiry is judged by the caller's
/// `now`, never by the backend's clock.
#[async_trait]
pub trait OutboxStore: Send + Sync + Debug {
    /// Enqueues a message (status `Pending` or `AwaitingApproval`, `version` 1).
    /// Idempotent on (workspace, `idempotency_key`): an existing message with the key
    /// is returned unchanged with `created: false`. The contact, when set, must exist
    /// in the workspace (`InvalidReference`).
    async fn enqueue_outbox(
        &self,
        message: &OutboxMessage,
    ) -> Result<Inserted<OutboxMessage>, StoreError>;

    /// The message, or `NotFound`.
    async fn get_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
    ) -> Result<OutboxMessage, StoreError>;

    /// The message the provider knows as `provider_message_id`, if any (for matching
    /// delivery reports, bounces and replies).
    async fn find_outbox_by_provider_id(
        &self,
        workspace_id: WorkspaceId,
        provider_message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError>;

    /// Messages of the workspace, optionally with one status, ascending by id.
    async fn list_outbox(
        &self,
        workspace_id: WorkspaceId,
        status: Option<OutboxStatus>,
        page: Page<OutboxMessageId>,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Claims up to `claim.limit` `Pending` messages with `not_before <= claim.now` in
    /// `claim.scope`, earliest `not_before` first (ties by id). Each becomes `InFlight`
    /// with a lease owned by `claim.worker` until `now + lease_ttl`, a fencing token one
    /// greater than its previous one, and `attempts + 1`.
    ///
    /// MUST be atomic: concurrent claimers never receive the same message.
    async fn claim_outbox(&self, claim: &Claim) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Marks an in-flight message `Sent`, records `sent.activity` and applies
    /// `sent.enrollment` (see [`SentRecord::enrollment`]) in one atomic step: the
    /// message and the activity are stored together or not at all. Lease-checked.
    async fn mark_outbox_sent(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        sent: &SentRecord,
    ) -> Result<OutboxMessage, StoreError>;

    /// Puts an in-flight message back to `Pending` at `reschedule.not_before`, clearing
    /// the lease and storing the reason in `last_error`. Lease-checked.
    async fn reschedule_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        reschedule: &Reschedule,
    ) -> Result<OutboxMessage, StoreError>;

    /// Parks an in-flight message until a person decides: it becomes
    /// `AwaitingApproval` (not claimable), the lease is cleared and the claim's attempt
    /// is given back, since nothing was sent. Lease-checked.
    async fn hold_outbox_for_approval(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, StoreError>;

    /// Ends an in-flight message as `Failed`, `DeadLettered` or `Cancelled` (any other
    /// status is `Invalid`) with `reason` in `last_error`. Lease-checked.
    async fn finish_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        status: OutboxStatus,
        reason: &str,
    ) -> Result<OutboxMessage, StoreError>;

    /// Returns every `InFlight` message in `scope` whose lease expired at or before
    /// `now - MAX_CLOCK_SKEW` (see the trait's "Clock skew") to `Pending` (lease
    /// cleared, token kept). Returns how many. A lease that expired later MUST be left
    /// alone.
    async fn reap_outbox_leases(&self, scope: Scope, now: DateTime<Utc>)
    -> Result<u64, StoreError>;

    /// Compare-and-set update outside the send path: approval edits, releasing an
    /// approved message to `Pending`, cancelling. The new status may be
    /// `AwaitingApproval`, `Pending` or `Cancelled` (else `Invalid`), and a message that
    /// is `InFlight` or final cannot be changed (`Conflict`).
    async fn update_outbox(&self, message: &OutboxMessage) -> Result<OutboxMessage, StoreError>;
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

    /// The item, or `NotFound`.
    async fn get_approval(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
    ) -> Result<ApprovalItem, StoreError>;

    /// The item of an outbox message, if one exists.
    async fn find_approval_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_id: OutboxMessageId,
    ) -> Result<Option<ApprovalItem>, StoreError>;

    /// [`find_approval_for_outbox`](Self::find_approval_for_outbox) for many messages
    /// at once: one answer per id, in order. A backend should answer in one round trip
    /// (the default asks one by one).
    async fn find_approvals_for_outbox(
        &self,
        workspace_id: WorkspaceId,
        outbox_message_ids: &[OutboxMessageId],
    ) -> Result<Vec<Option<ApprovalItem>>, StoreError> {
        let mut found = Vec::with_capacity(outbox_message_ids.len());
        for &id in outbox_message_ids {
            found.push(self.find_approval_for_outbox(workspace_id, id).await?);
        }
        Ok(found)
    }

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
    /// the rules of [`OutboxStore::update_outbox`] (for example released to `Pending`
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
