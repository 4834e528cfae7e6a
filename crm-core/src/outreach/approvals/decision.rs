//! What a decision changes: the item and its message, planned without I/O.

use chrono::{DateTime, Utc};

use crate::error::{StoreError, ValidationError};
use crate::ids::{ApprovalItemId, OutboxMessageId, UserId};
use crate::model::{ApprovalItem, ApprovalStatus, OutboxMessage, OutboxStatus};

/// Why an inbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// No such item in this workspace (another workspace's item looks the same).
    #[error("approval item {id} not found")]
    NotFound {
        /// The item asked for.
        id: ApprovalItemId,
    },
    /// The user may not decide approvals in this workspace.
    #[error("user {user} may not decide approvals in this workspace")]
    Forbidden {
        /// The user.
        user: UserId,
    },
    /// The item is no longer pending: someone (or expiry) decided it first.
    #[error("approval item is already {status}")]
    AlreadyDecided {
        /// Its status now.
        status: ApprovalStatus,
    },
    /// The input breaks a rule (a blank reason or body), or the message can no longer
    /// be sent (it was cancelled or sent meanwhile).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The dispatcher holds the item's message right now (it is parking it for
    /// approval); deciding again shortly succeeds.
    #[error("outbox message {id} is being processed; try again shortly")]
    MessageBusy {
        /// The message.
        id: OutboxMessageId,
    },
    /// The store failed.
    #[error("approval inbox store failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for InboxError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => Self::Invalid(v),
            other => Self::Store(other),
        }
    }
}

impl InboxError {
    /// Whether the same call may succeed if simply tried again later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::MessageBusy { .. } => true,
            Self::Store(e) => e.is_retryable(),
            Self::NotFound { .. }
            | Self::Forbidden { .. }
            | Self::AlreadyDecided { .. }
            | Self::Invalid(_) => false,
        }
    }
}

/// What a person (or expiry) decides about one pending item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send the text as it is.
    Approve,
    /// Send this text instead (an edit for graduation).
    EditAndApprove(String),
    /// Never send it, for this reason.
    Reject(String),
    /// Its time to live ran out.
    Expire,
}

impl Action {
    /// The audit action name.
    pub(crate) fn audit_action(&self) -> &'static str {
        match self {
            Self::Approve => "approval.approved",
            Self::EditAndApprove(_) => "approval.edited",
            Self::Reject(_) => "approval.rejected",
            Self::Expire => "approval.expired",
        }
    }
}

/// The reason stored on a message cancelled because its item expired.
pub(crate) const EXPIRED_REASON: &str = "approval expired before anyone decided";

/// The item and message as they are to be stored for `action` (the item's version and
/// the message's version stay as read: the store compares and sets them).
///
/// The message is released (`Pending`, with the text to send) on approval and
/// cancelled on rejection or expiry. A message the dispatcher holds in flight is
/// `MessageBusy`; a final message is left alone when the item is rejected or expires,
/// and cannot be approved (`Invalid`).
pub(crate) fn plan(
    item: &ApprovalItem,
    message: &OutboxMessage,
    action: &Action,
    user: Option<UserId>,
    now: DateTime<Utc>,
) -> Result<(ApprovalItem, Option<OutboxMessage>), InboxError> {
    if item.status != ApprovalStatus::Pending {
        return Err(InboxError::AlreadyDecided {
            status: item.status,
        });
    }
    let mut next = item.clone();
    next.updated_at = now;
    next.decided_at = Some(now);
    next.decided_by = user;
    next.decided_by_rule = None;
    match action {
        Action::Approve => next.status = ApprovalStatus::Approved,
        Action::EditAndApprove(body) => {
            next.status = ApprovalStatus::Approved;
            next.edited_body = Some(body.clone());
        }
        Action::Reject(reason) => {
            next.status = ApprovalStatus::Rejected;
            next.reason = Some(reason.clone());
        }
        Action::Expire => {
            next.status = ApprovalStatus::Expired;
            next.decided_at = None;
            next.decided_by = None;
        }
    }
    let changed = match message.status {
        OutboxStatus::InFlight => return Err(InboxError::MessageBusy { id: message.id }),
        OutboxStatus::AwaitingApproval | OutboxStatus::Pending => {
            let mut m = message.clone();
            m.updated_at = now;
            if next.status == ApprovalStatus::Approved {
                m.status = OutboxStatus::Pending;
                next.body_to_send().clone_into(&mut m.body);
            } else {
                m.status = OutboxStatus::Cancelled;
                m.last_error = Some(match action {
                    Action::Reject(reason) => format!("rejected by an approver: {reason}"),
                    _ => EXPIRED_REASON.to_owned(),
                });
            }
            Some(m)
        }
        status if next.status == ApprovalStatus::Approved => {
            return Err(ValidationError::new(
                "approval.outbox_message",
                format!("the message is already {status} and can no longer be sent"),
            )
            .into());
        }
        _ => None,
    };
    Ok((next, changed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::model::Channel;
    use chrono::Duration;

    fn pair() -> (ApprovalItem, OutboxMessage, DateTime<Utc>) {
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(100);
        let message = OutboxMessage::new(
            WorkspaceId::new(),
            Channel::Email,
            "ada@example.com",
            "Original",
            "key",
            now,
        )
        .unwrap()
        .with_status(OutboxStatus::AwaitingApproval);
        let item = ApprovalItem::pending(
            message.workspace_id,
            message.id,
            message.channel,
            "Original",
            now,
            now + Duration::days(1),
        )
        .unwrap();
        (item, message, now + Duration::minutes(5))
    }

    #[test]
    fn approving_releases_the_message_with_the_text_to_send() {
        let (item, message, now) = pair();
        let user = UserId::new();
        let (i, m) = plan(&item, &message, &Action::Approve, Some(user), now).unwrap();
        assert_eq!(i.status, ApprovalStatus::Approved);
        assert_eq!(
            (i.decided_by, i.decided_at, i.version),
            (Some(user), Some(now), 1)
        );
        let m = m.unwrap();
        assert_eq!(
            (m.status, m.body.as_str()),
            (OutboxStatus::Pending, "Original")
        );
        assert_eq!(m.version, message.version, "the store compares and sets it");

        let edit = Action::EditAndApprove("Edited".into());
        let (i, m) = plan(&item, &message, &edit, Some(user), now).unwrap();
        assert_eq!(i.edited_body.as_deref(), Some("Edited"));
        assert_eq!(m.unwrap().body, "Edited");
    }

    #[test]
    fn rejecting_and_expiring_cancel_the_message() {
        let (item, message, now) = pair();
        let reject = Action::Reject("off-brand".into());
        let (i, m) = plan(&item, &message, &reject, Some(UserId::new()), now).unwrap();
        assert_eq!(
            (i.status, i.reason.as_deref()),
            (ApprovalStatus::Rejected, Some("off-brand"))
        );
        let m = m.unwrap();
        assert_eq!(m.status, OutboxStatus::Cancelled);
        assert!(m.last_error.unwrap().contains("off-brand"));

        let (i, m) = plan(&item, &message, &Action::Expire, None, now).unwrap();
        assert_eq!((i.status, i.decided_by), (ApprovalStatus::Expired, None));
        assert_eq!(m.unwrap().status, OutboxStatus::Cancelled);
    }

    #[test]
    fn decided_items_and_busy_or_final_messages_are_refused() {
        let (mut item, mut message, now) = pair();
        message.status = OutboxStatus::InFlight;
        assert!(matches!(
            plan(&item, &message, &Action::Approve, None, now),
            Err(InboxError::MessageBusy { .. })
        ));
        message.status = OutboxStatus::Cancelled;
        assert!(matches!(
            plan(&item, &message, &Action::Approve, None, now),
            Err(InboxError::Invalid(_))
        ));
        let (_, untouched) = plan(&item, &message, &Action::Reject("r".into()), None, now).unwrap();
        assert_eq!(untouched, None, "a final message is left alone");
        item.status = ApprovalStatus::Rejected;
        assert!(matches!(
            plan(&item, &message, &Action::Approve, None, now),
            Err(InboxError::AlreadyDecided {
                status: ApprovalStatus::Rejected
            })
        ));
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(
            InboxError::MessageBusy {
                id: OutboxMessageId::new()
            }
            .is_retryable()
        );
        assert!(
            !InboxError::Forbidden {
                user: UserId::new()
            }
            .is_retryable()
        );
        let e = InboxError::from(StoreError::from(ValidationError::new("f", "bad")));
        assert!(matches!(e, InboxError::Invalid(_)));
        assert!(!InboxError::from(StoreError::not_found("x", 1)).is_retryable());
    }
}
