//! Telling a person that an item waits: [`notify_if_needed`] and [`RecordingNotifier`].

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::approval::Notifier;
use crate::channel::ChannelError;
use crate::ids::ApprovalItemId;
use crate::model::{ApprovalItem, ApprovalStatus};

/// What announcing an item did. Whatever the outcome, the item stays in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Announcement {
    /// The notifier accepted it.
    Notified,
    /// The notifier failed; the failure was logged and the item is still pending.
    Failed,
    /// No notifier is configured.
    NoNotifier,
    /// The item does not need a person (it is no longer pending).
    NotNeeded,
}

/// Calls `notifier` for `item` if the item is pending. A failing notifier is logged
/// (item id and error kind only) and answered with [`Announcement::Failed`]; it never
/// loses or changes the item.
pub async fn notify_if_needed(
    notifier: Option<&dyn Notifier>,
    item: &ApprovalItem,
) -> Announcement {
    if item.status != ApprovalStatus::Pending {
        return Announcement::NotNeeded;
    }
    let Some(notifier) = notifier else {
        return Announcement::NoNotifier;
    };
    match notifier.approval_needed(item).await {
        Ok(()) => Announcement::Notified,
        Err(e) => {
            tracing::warn!(
                workspace = %item.workspace_id,
                item = %item.id,
                kind = ?e.kind(),
                error = %e,
                "approval notifier failed; the item stays in the inbox"
            );
            Announcement::Failed
        }
    }
}

/// A [`Notifier`] for tests that records the ids of the items it was told about.
/// [`RecordingNotifier::failing`] records too, then fails every call. Clones share
/// one record.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    seen: Arc<Mutex<Vec<ApprovalItemId>>>,
    fail: bool,
}

impl RecordingNotifier {
    /// A notifier that accepts every item.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A notifier whose every call fails with a permanent error.
    #[must_use]
    pub fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }

    /// The items announced so far, in call order.
    #[must_use]
    pub fn notified(&self) -> Vec<ApprovalItemId> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn approval_needed(&self, item: &ApprovalItem) -> Result<(), ChannelError> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item.id);
        if self.fail {
            return Err(ChannelError::Permanent {
                provider: "recording",
                reason: "this notifier fails on purpose".to_owned(),
            });
        }
        Ok(())
    }
}
