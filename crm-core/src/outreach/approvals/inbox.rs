//! [`ApprovalInbox`]: people approve, edit, reject; old items expire.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::approval::Notifier;
use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind, ValidationError};
use crate::ids::{ApprovalItemId, OutboxMessageId, UserId, WorkspaceId};
use crate::model::{Actor, ApprovalItem, ApprovalStatus, AuditEntry, OutboxStatus};
use crate::store::{ApprovalInboxStore, Page, Scope};

use super::decision::{Action, EXPIRED_REASON, InboxError, plan};
use super::notify::{Announcement, notify_if_needed};
use super::permissions::ApproverDirectory;

/// How often a decision is re-read and retried after losing a compare-and-set to a
/// concurrent change that left the item pending (an edit of its context, say).
const MAX_ATTEMPTS: usize = 5;

/// The human-in-the-loop approval inbox of every workspace in one store.
///
/// Every decision is recorded with
/// [`ApprovalStore::decide_approval`](crate::store::ApprovalStore::decide_approval):
/// the item (compare-and-set on its version) and its outbox message change together,
/// so an approved message is released to `Pending` with the text to send, and a
/// rejected or expired one is cancelled. Of two people deciding one item at once,
/// exactly one wins; the other gets [`InboxError::AlreadyDecided`]. An item still
/// pending past its `expires_at` cannot be decided: the attempt expires it and answers
/// `AlreadyDecided { status: Expired }`.
///
/// Each decision appends an [`AuditEntry`] (actor, `approval.approved`,
/// `approval.edited`, `approval.rejected` or `approval.expired`, the reason; never
/// the message text). The audit append follows the decision and is not atomic with
/// it: if it fails, the failure is logged and the decision stands.
#[derive(Debug, Clone)]
pub struct ApprovalInbox {
    store: Arc<dyn ApprovalInboxStore>,
    clock: Arc<dyn Clock>,
    approvers: Arc<dyn ApproverDirectory>,
    notifier: Option<Arc<dyn Notifier>>,
}

/// What [`ApprovalInbox::submit`] stored and whether a person was told.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The item as stored (the existing one if the message already had an item).
    pub item: ApprovalItem,
    /// Whether this call created it.
    pub created: bool,
    /// What announcing it did ([`Announcement::NotNeeded`] when not created).
    pub announcement: Announcement,
}

/// What [`ApprovalInbox::expire_due`] did.
#[derive(Debug, Default)]
pub struct ExpiryReport {
    /// The items that expired, as stored.
    pub expired: Vec<ApprovalItem>,
    /// The messages of those items that were cancelled (those still awaiting approval).
    pub cancelled: Vec<OutboxMessageId>,
    /// Items whose message could not be cancelled; the item is expired regardless and
    /// its message stays unsendable (`AwaitingApproval`) until a later cancel.
    pub failed: Vec<(ApprovalItemId, InboxError)>,
}

impl ApprovalInbox {
    /// An inbox over `store`, timed by `clock`, where `approvers` says who may decide.
    #[must_use]
    pub fn new(
        store: Arc<dyn ApprovalInboxStore>,
        clock: Arc<dyn Clock>,
        approvers: Arc<dyn ApproverDirectory>,
    ) -> Self {
        Self {
            store,
            clock,
            approvers,
            notifier: None,
        }
    }

    /// Tells `notifier` about every new item that needs a person.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Adds `item` to the inbox (idempotent per outbox message, as
    /// [`insert_approval`](crate::store::ApprovalStore::insert_approval)) and, when
    /// this call created it, announces it. A failing notifier never loses the item.
    ///
    /// # Errors
    /// Store failures, including `Invalid` for a bad item.
    pub async fn submit(&self, item: &ApprovalItem) -> Result<Submitted, InboxError> {
        let inserted = self.store.insert_approval(item).await?;
        let announcement = if inserted.created {
            self.announce(&inserted.value).await
        } else {
            Announcement::NotNeeded
        };
        Ok(Submitted {
            item: inserted.value,
            created: inserted.created,
            announcement,
        })
    }

    /// Tells the notifier that `item` waits, if it is pending; see [`notify_if_needed`].
    pub async fn announce(&self, item: &ApprovalItem) -> Announcement {
        notify_if_needed(self.notifier.as_deref(), item).await
    }

    /// The item, or `NotFound` (also for another workspace's item).
    ///
    /// # Errors
    /// `NotFound`; store failures.
    pub async fn get(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
    ) -> Result<ApprovalItem, InboxError> {
        match self.store.get_approval(workspace_id, id).await {
            Err(e) if e.kind() == StoreErrorKind::NotFound => Err(InboxError::NotFound { id }),
            other => Ok(other?),
        }
    }

    /// Pending items of the workspace, ascending by id (oldest first). Reading is not
    /// permission-checked here; the host decides who may see the inbox.
    ///
    /// # Errors
    /// `Invalid` for a page limit outside 1 to 1000; store failures.
    pub async fn list_pending(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ApprovalItemId>,
    ) -> Result<Vec<ApprovalItem>, InboxError> {
        self.list(workspace_id, Some(ApprovalStatus::Pending), page)
            .await
    }

    /// Items of the workspace with `status` (all when `None`), ascending by id.
    ///
    /// # Errors
    /// As [`list_pending`](Self::list_pending).
    pub async fn list(
        &self,
        workspace_id: WorkspaceId,
        status: Option<ApprovalStatus>,
        page: Page<ApprovalItemId>,
    ) -> Result<Vec<ApprovalItem>, InboxError> {
        Ok(self
            .store
            .list_approvals(workspace_id, status, page)
            .await?)
    }

    /// Approves the item as drafted and releases its message to `Pending`.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `AlreadyDecided`, `Invalid` (the message was
    /// cancelled or sent meanwhile), `MessageBusy`, store failures.
    pub async fn approve(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
        user: UserId,
    ) -> Result<ApprovalItem, InboxError> {
        self.authorize(workspace_id, user).await?;
        self.decide(workspace_id, id, user, Action::Approve).await
    }

    /// Rejects the item with `reason` (required, not blank) and cancels its message.
    ///
    /// # Errors
    /// As [`approve`](Self::approve); `Invalid` for a blank reason.
    pub async fn reject(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
        user: UserId,
        reason: &str,
    ) -> Result<ApprovalItem, InboxError> {
        self.authorize(workspace_id, user).await?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ValidationError::new("approval.reason", "must not be empty").into());
        }
        self.decide(workspace_id, id, user, Action::Reject(reason.to_owned()))
            .await
    }

    /// Approves the item with `new_body` as the text to send: it is stored as the
    /// item's `edited_body` and becomes the message's body. It counts as an edit for
    /// graduation (it ends the template's clean streak). Text identical to what would
    /// be sent anyway is no edit: it is a plain [`approve`](Self::approve).
    ///
    /// # Errors
    /// As [`approve`](Self::approve); `Invalid` for a blank body.
    pub async fn edit_and_approve(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
        user: UserId,
        new_body: &str,
    ) -> Result<ApprovalItem, InboxError> {
        self.authorize(workspace_id, user).await?;
        if new_body.trim().is_empty() {
            return Err(ValidationError::new("approval.edited_body", "must not be empty").into());
        }
        let action = Action::EditAndApprove(new_body.to_owned());
        self.decide(workspace_id, id, user, action).await
    }

    /// Approves each item in `ids`, in order, and answers one result per id. A user
    /// who may not approve gets `Forbidden` for every id and nothing changes; otherwise
    /// each item succeeds or fails on its own (an already decided one is
    /// `AlreadyDecided`, an unknown one `NotFound`).
    pub async fn batch_approve(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ApprovalItemId],
        user: UserId,
    ) -> Vec<(ApprovalItemId, Result<ApprovalItem, InboxError>)> {
        if !self.approvers.can_approve(workspace_id, user).await {
            return ids
                .iter()
                .map(|id| (*id, Err(InboxError::Forbidden { user })))
                .collect();
        }
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let result = self.decide(workspace_id, *id, user, Action::Approve).await;
            results.push((*id, result));
        }
        results
    }

    /// Expires every pending item of every workspace whose `expires_at` is at or
    /// before the clock's now, and cancels each one's message if it still awaits
    /// approval. Meant to run periodically.
    ///
    /// # Errors
    /// Store failures of the expiry itself; per-message failures are in the report.
    pub async fn expire_due(&self) -> Result<ExpiryReport, InboxError> {
        let now = self.clock.now();
        let mut report = ExpiryReport {
            expired: self.store.expire_approvals(Scope::All, now).await?,
            ..ExpiryReport::default()
        };
        for item in &report.expired {
            self.audit(item, &Action::Expire, Actor::System, now).await;
            match self.cancel_expired_message(item, now).await {
                Ok(true) => report.cancelled.push(item.outbox_message_id),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        workspace = %item.workspace_id,
                        item = %item.id,
                        error = %e,
                        "could not cancel the message of an expired approval item"
                    );
                    report.failed.push((item.id, e));
                }
            }
        }
        Ok(report)
    }

    async fn authorize(&self, workspace_id: WorkspaceId, user: UserId) -> Result<(), InboxError> {
        if self.approvers.can_approve(workspace_id, user).await {
            Ok(())
        } else {
            Err(InboxError::Forbidden { user })
        }
    }

    /// Re-reads and retries after a lost compare-and-set; a loser whose item was
    /// decided meanwhile ends with `AlreadyDecided`.
    async fn decide(
        &self,
        workspace_id: WorkspaceId,
        id: ApprovalItemId,
        user: UserId,
        action: Action,
    ) -> Result<ApprovalItem, InboxError> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let item = self.get(workspace_id, id).await?;
            if item.status != ApprovalStatus::Pending {
                return Err(InboxError::AlreadyDecided {
                    status: item.status,
                });
            }
            let now = self.clock.now();
            let result = if item.expires_at <= now {
                self.record(&item, &Action::Expire, None, now)
                    .await
                    .and(Err(InboxError::AlreadyDecided {
                        status: ApprovalStatus::Expired,
                    }))
            } else {
                let action = match &action {
                    Action::EditAndApprove(body) if body == item.body_to_send() => Action::Approve,
                    other => other.clone(),
                };
                self.record(&item, &action, Some(user), now).await
            };
            match result {
                Err(InboxError::Store(e)) if lost_race(&e) => last = Some(e),
                // The message may have moved because a racing decision on this item
                // won between our two reads; the loser reports that decision.
                Err(e @ InboxError::Invalid(_)) => {
                    let now_item = self.get(workspace_id, id).await?;
                    return Err(if now_item.status == ApprovalStatus::Pending {
                        e
                    } else {
                        InboxError::AlreadyDecided {
                            status: now_item.status,
                        }
                    });
                }
                other => return other,
            }
        }
        Err(last.map_or(
            InboxError::AlreadyDecided {
                status: ApprovalStatus::Pending,
            },
            InboxError::Store,
        ))
    }

    /// Plans and stores one decision, then audits it.
    async fn record(
        &self,
        item: &ApprovalItem,
        action: &Action,
        user: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<ApprovalItem, InboxError> {
        let message = self
            .store
            .get_outbox(item.workspace_id, item.outbox_message_id)
            .await?;
        let (next, message) = plan(item, &message, action, user, now)?;
        let decided = self.store.decide_approval(&next, message.as_ref()).await?;
        tracing::info!(
            workspace = %item.workspace_id,
            item = %item.id,
            action = action.audit_action(),
            "approval item decided"
        );
        let actor = user.map_or(Actor::System, Actor::User);
        self.audit(&decided.item, action, actor, now).await;
        Ok(decided.item)
    }

    /// Cancels the message of an expired item if it still awaits approval; `false` when
    /// there was nothing to cancel.
    async fn cancel_expired_message(
        &self,
        item: &ApprovalItem,
        now: DateTime<Utc>,
    ) -> Result<bool, InboxError> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let mut message = self
                .store
                .get_outbox(item.workspace_id, item.outbox_message_id)
                .await?;
            if message.status != OutboxStatus::AwaitingApproval {
                return Ok(false);
            }
            message.status = OutboxStatus::Cancelled;
            message.last_error = Some(EXPIRED_REASON.to_owned());
            message.updated_at = now;
            match self.store.update_outbox(&message).await {
                Ok(_) => return Ok(true),
                Err(e) if lost_race(&e) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or(
            InboxError::MessageBusy {
                id: item.outbox_message_id,
            },
            InboxError::Store,
        ))
    }

    /// Appends the audit entry of a decision; a failure is logged, never returned.
    async fn audit(&self, item: &ApprovalItem, action: &Action, actor: Actor, now: DateTime<Utc>) {
        let mut details = json!({
            "outbox_message_id": item.outbox_message_id,
            "channel": item.channel,
            "status": item.status,
            "edited": item.edited_body.is_some(),
        });
        if let Some(template_key) = &item.template_key {
            details["template_key"] = json!(template_key);
        }
        match action {
            Action::Reject(reason) => details["reason"] = json!(reason),
            Action::Expire => details["reason"] = json!(EXPIRED_REASON),
            Action::Approve | Action::EditAndApprove(_) => {}
        }
        let entry = AuditEntry::new(
            item.workspace_id,
            actor,
            action.audit_action(),
            item.id.to_string(),
            details,
            now,
        );
        let result = match entry {
            Ok(entry) => self.store.append_audit(&entry).await.map(drop),
            Err(e) => Err(StoreError::from(e)),
        };
        if let Err(e) = result {
            tracing::error!(
                workspace = %item.workspace_id,
                item = %item.id,
                error = %e,
                "could not append the audit entry of an approval decision"
            );
        }
    }
}

/// Whether a write lost to a concurrent change and is worth re-reading and retrying.
fn lost_race(e: &StoreError) -> bool {
    matches!(
        e.kind(),
        StoreErrorKind::VersionConflict | StoreErrorKind::Conflict
    )
}
