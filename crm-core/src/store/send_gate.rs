//! The send gate: the types of [`OutboxStore::begin_sends`](crate::store::OutboxStore::begin_sends),
//! the one atomic check every message passes right before its adapter call, and of
//! what an unsubscribe reports ([`StoppedSends`]).

use std::ops::Deref;

use chrono::{DateTime, Utc};

use crate::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crate::model::{Channel, SuppressionReason};
use crate::store::QuotaKey;

/// A daily touch limit checked at send time: fewer than `limit` messages of the
/// contact marked sending or sent in `[day_start, day_end)` (the contact's local day,
/// in UTC bounds), the message itself excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TouchLimit {
    /// Most messages per local day.
    pub limit: u32,
    /// The local day's first instant.
    pub day_start: DateTime<Utc>,
    /// The next local day's first instant.
    pub day_end: DateTime<Utc>,
}

/// One message about to be handed to its adapter, as the dispatcher asks
/// [`begin_sends`](crate::store::OutboxStore::begin_sends) for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SendStart {
    /// The message's workspace.
    pub workspace_id: WorkspaceId,
    /// The message.
    pub outbox_id: OutboxMessageId,
    /// The caller's fencing token (the message must be `InFlight` under it).
    pub lease_token: i64,
    /// The contact the message goes to (touches are counted per contact; consent is
    /// read for it).
    pub contact_id: ContactId,
    /// The message's channel.
    pub channel: Channel,
    /// The recipient, normalised with
    /// [`normalize_address`](crate::model::normalize_address) as suppressions are.
    pub recipient: String,
    /// The quota counter the send takes a unit of (`send:<channel>` for the
    /// workspace's local day, see `WorkspaceSettings::send_quota_key`).
    pub quota_key: QuotaKey,
    /// The counter's cap.
    pub cap: u32,
    /// The contact's daily touch limit, or `None` when the message does not touch
    /// (a manual task) or the limit is not enforced.
    pub touch_limit: Option<TouchLimit>,
}

/// What [`begin_sends`](crate::store::OutboxStore::begin_sends) answered for one
/// [`SendStart`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStartOutcome {
    /// Marked sending, with its quota unit: call the adapter now.
    Go,
    /// The message is no longer `InFlight` under the caller's token (another claim
    /// took it, or it was reaped and re-claimed); nothing changed.
    LeaseLost,
    /// The message is no longer `InFlight` at all (an unsubscribe cancelled it, or it
    /// ended otherwise); nothing changed.
    NotInFlight,
    /// The recipient is suppressed: the store cancelled the message (as
    /// `finish_outbox` cancels) and gave back any quota unit it held for the key.
    Suppressed {
        /// The suppression's reason.
        reason: SuppressionReason,
    },
    /// The contact withdrew consent for the channel: the store cancelled the message
    /// and gave back any quota unit it held for the key.
    ConsentWithdrawn,
    /// The contact reached its touch limit for the day; nothing changed except that a
    /// quota unit held for the key was given back. The caller postpones the message.
    TouchLimit,
    /// The cap of the quota key is reached; nothing changed. The caller postpones the
    /// message.
    OverCap,
}

impl SendStartOutcome {
    /// Whether the send may start.
    #[must_use]
    pub const fn is_go(&self) -> bool {
        matches!(self, Self::Go)
    }
}

/// The sends an unsubscribe (a suppression, or a consent withdrawal) stopped or could
/// no longer stop, both ascending by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoppedSends {
    /// Messages cancelled by the call: `Pending`, or `InFlight` but not yet marked
    /// sending. None of them will be sent.
    pub cancelled: Vec<OutboxMessageId>,
    /// Messages already marked sending when the call committed: their adapter call
    /// may run or have run. Every other send to the address starts only after a
    /// successful `begin_sends`, which now refuses it.
    pub in_flight: Vec<OutboxMessageId>,
}

/// A store answer with the sends it stopped: what `add_suppression` and
/// `record_consent` return. Dereferences to the answer itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WithStopped<T> {
    /// The answer proper.
    pub result: T,
    /// The sends the call stopped or could no longer stop.
    pub stopped: StoppedSends,
}

impl<T> WithStopped<T> {
    /// The answer proper, dropping the stopped sends.
    pub fn into_result(self) -> T {
        self.result
    }
}

impl<T> Deref for WithStopped<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.result
    }
}
