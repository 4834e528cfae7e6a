//! The outbox: outbound messages and their send path.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{OutboxMessageId, WorkspaceId};
use crate::model::{Activity, ApprovalItem, Enrollment, OutboxMessage, OutboxStatus};
use crate::store::{Claim, Inserted, Page, QuotaKey, Scope, SendStart, SendStartOutcome};

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

/// One message of [`OutboxStore::mark_outbox_sent_many`]: the message, the fencing
/// token it is held under, and what to record.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMark {
    /// The message's workspace.
    pub workspace_id: WorkspaceId,
    /// The message.
    pub id: OutboxMessageId,
    /// The caller's fencing token (the message must be `InFlight` under it).
    pub lease_token: i64,
    /// What to record, as for [`OutboxStore::mark_outbox_sent`].
    pub sent: SentRecord,
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

/// What [`OutboxStore::hold_outbox_for_approval`] stored: the message and its approval
/// item, as they stand after the one atomic step.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalHold {
    /// The message: `AwaitingApproval` when it was parked, still `InFlight` under the
    /// caller's lease when its existing item was already decided (see the method).
    pub message: OutboxMessage,
    /// The message's item: the given one (`created: true`) or the one that already
    /// existed (`created: false`).
    pub item: Inserted<ApprovalItem>,
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

    /// The send gate: checks and marks, in ONE atomic step (a transaction; memory:
    /// under its lock) and in the given order, each message about to be handed to its
    /// adapter. For each start, in order:
    /// 1. the message must be `InFlight` under `lease_token` (else `LeaseLost`, or
    ///    `NotInFlight` when it is no longer in flight at all; `NotFound` is answered
    ///    as `NotInFlight` too);
    /// 2. no suppression of (`channel` or all channels, `recipient`) and the consent in
    ///    force for (`contact_id`, `channel`) not withdrawn, else `Suppressed` /
    ///    `ConsentWithdrawn`: the message is cancelled with that reason, recording
    ///    what [`finish_outbox`](Self::finish_outbox) records for a cancellation, and
    ///    the quota unit it held for `quota_key` is given back;
    /// 3. with a touch limit: the contact's messages marked sending (see below) or
    ///    sent with a send start in `[day_start, day_end)`, this one excluded, fewer
    ///    than `limit` (earlier `Go`s of the same call count), else `TouchLimit` (the
    ///    unit held for `quota_key` is given back, nothing else changes);
    /// 4. a quota unit of `quota_key`: the grant this message already holds for the
    ///    key is reused (a re-claimed message never takes a second unit), else one is
    ///    taken if the counter's total stays at or under `cap` and the grant recorded
    ///    (else `OverCap`, nothing changes). However many callers race, the total
    ///    never passes `cap`;
    /// 5. the message is marked sending (its send start is `now`; it stays `InFlight`,
    ///    the mark is store-internal) and the answer is `Go`.
    ///
    /// The mark makes the send visible to unsubscribes: once
    /// [`add_suppression`](crate::store::ComplianceStore::add_suppression) or a
    /// withdrawing [`record_consent`](crate::store::ComplianceStore::record_consent)
    /// returns, every message to that address or contact was either cancelled or was
    /// marked sending before (and is reported in flight): `begin_sends` never answers
    /// `Go` for it afterwards. The mark ends when the message leaves `InFlight`
    /// (sent, rescheduled, finished, reaped); a message marked sending and then
    /// rescheduled keeps its grant, so its next claim on the same local day reuses it.
    /// One answer per start, in order. Tenant scoping: each start names its
    /// workspace.
    async fn begin_sends(
        &self,
        starts: &[SendStart],
        now: DateTime<Utc>,
    ) -> Result<Vec<SendStartOutcome>, StoreError>;

    /// Gives back the quota unit the message holds for `key` (taken by
    /// [`begin_sends`](Self::begin_sends)), for a message that ended `Failed`,
    /// `DeadLettered` or `Cancelled` before its send reached the provider. Returns
    /// whether a unit was given back: `false` when the message holds no grant for the
    /// key, or is not in one of those statuses (a message still in flight, pending or
    /// sent keeps its unit, so a release can never let the cap be passed).
    /// `NotFound` if the message does not exist.
    async fn release_send_quota(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        key: &QuotaKey,
    ) -> Result<bool, StoreError>;

    /// Marks an in-flight message `Sent`, records `sent.activity` and applies
    /// `sent.enrollment` (see [`SentRecord::enrollment`]) in one atomic step: the
    /// message and the activity are stored together or not at all. Lease-checked.
    /// Appends, in the same step, `outbox.sent` (plus `enrollment.step_sent` for a
    /// sequence step), the activity's `activity.logged` and the enrollment's
    /// transition events, if it changed state.
    async fn mark_outbox_sent(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        sent: &SentRecord,
    ) -> Result<OutboxMessage, StoreError>;

    /// [`mark_outbox_sent`](Self::mark_outbox_sent) for many messages in ONE atomic step
    /// (a transaction; memory: under its lock): one commit for a wave of completed
    /// sends instead of one per message. One answer per mark, in order.
    ///
    /// Each mark is fenced by its own lease token exactly as the single call is: a
    /// message not `InFlight` under its token is answered `Err(LeaseLost)` (or
    /// `Err(NotFound)`) in its place and changes nothing, while the others are recorded.
    /// Each recorded message gets what the single call writes (status, activity,
    /// enrollment compare-and-set, and the same events).
    ///
    /// The call as a whole fails, storing nothing, when any mark is refused before the
    /// lease check: a record the single call refuses as `Invalid` (an invalid activity,
    /// an activity or enrollment of another workspace than its message), a message
    /// named twice (`Invalid`), or a write the backend rejects (`InvalidReference` for a
    /// missing contact or deal of an activity). A caller that must isolate such a
    /// record retries its marks one by one with the single call.
    async fn mark_outbox_sent_many(
        &self,
        marks: &[SentMark],
    ) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError>;

    /// Puts an in-flight message back to `Pending` at `reschedule.not_before`, clearing
    /// the lease and storing the reason in `last_error`. Lease-checked.
    async fn reschedule_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        reschedule: &Reschedule,
    ) -> Result<OutboxMessage, StoreError>;

    /// Requests a person's decision on an in-flight message and parks it, in one atomic
    /// step, so an approver never sees a pending item whose message is still in flight
    /// (and no crash leaves a parked message without an item). Lease-checked first: a
    /// lost lease stores nothing.
    ///
    /// `item` is inserted as by
    /// [`ApprovalStore::insert_approval`](crate::store::ApprovalStore::insert_approval)
    /// (same checks, `approval.requested` appended when created; it must be for this
    /// message of this workspace, else `Invalid`); if the message already has an item,
    /// that one is returned with `created: false` instead. Then, when the item is
    /// `Pending`, the message becomes `AwaitingApproval` (not claimable), the lease is
    /// cleared and the claim's attempt is given back, since nothing was sent. An
    /// existing item that is already decided leaves the message untouched, still
    /// `InFlight` under the caller's lease, for the caller to act on the decision.
    async fn hold_outbox_for_approval(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<ApprovalHold, StoreError>;

    /// Ends an in-flight message as `Failed`, `DeadLettered` or `Cancelled` (any other
    /// status is `Invalid`) with `reason` in `last_error` and `updated_at = now`.
    /// Lease-checked. In the same atomic step:
    /// - appends `outbox.failed`, `outbox.dead_lettered` or `outbox.cancelled` with
    ///   `reason` as the event's `error` (so `reason` must be a classified text, never
    ///   a provider's raw answer);
    /// - for `Failed` and `DeadLettered` of a message with a contact, records a
    ///   `SendFailed` activity (contact, channel, message, `occurred_at = now`, details
    ///   `{status, attempts, error}`; see [`crate::events::send_failed_activity`])
    ///   with its `activity.logged`, so timelines and the failure-rate anomaly rule
    ///   see every failed send;
    /// - if the message belongs to an enrollment still `StepPending` on the message's
    ///   step, sets that enrollment's `next_run_at` to `now` (a version bump, no state
    ///   change), so the runner moves it on promptly instead of at its old due time.
    async fn finish_outbox(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        lease_token: i64,
        status: OutboxStatus,
        reason: &str,
        now: DateTime<Utc>,
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
    /// is `InFlight` or final cannot be changed (`Conflict`). Cancelling appends
    /// `outbox.cancelled` (without the free-text `last_error`) and, if the message
    /// belongs to an enrollment still `StepPending` on its step, sets that
    /// enrollment's `next_run_at` to the message's `updated_at`, in the same step.
    async fn update_outbox(&self, message: &OutboxMessage) -> Result<OutboxMessage, StoreError>;
}
