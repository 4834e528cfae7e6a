//! Enrolling contacts in sequences, with conflict checks, and editing sequence
//! definitions ([`SequenceEditor`]).
//!
//! [`Enroller::enroll`] checks everything that blocks an enrollment and answers with
//! every reason at once ([`EnrollError::Conflicts`]); nothing is enrolled when any
//! blocks:
//!
//! - [`Conflict::SequenceArchived`]: the sequence is archived.
//! - [`Conflict::AlreadyEnrolled`]: the contact runs this sequence already. The store
//!   enforces this atomically too; losing that race is reported the same way.
//! - [`Conflict::InAnotherSequence`]: the contact runs another sequence and the
//!   workspace's [`ParallelSequencePolicy`] is `Refuse`. This check reads then writes:
//!   two enrollments of one contact in two different sequences racing each other may
//!   both pass.
//! - [`Conflict::DailyTouchLimitReached`]: the contact got `daily_touch_limit` messages
//!   (`MessageSent` activities, any channel) since the start of its local day.
//! - [`Conflict::NoAddress`], [`Conflict::Suppressed`], [`Conflict::Unsubscribed`]: for
//!   each channel the sequence uses (manual tasks need no address), the contact has an
//!   address, the address is not suppressed, and consent is not withdrawn.

mod definitions;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crate::model::{
    Channel, ConsentStatus, Contact, Enrollment, Sequence, SequenceStatus, SuppressionReason,
};
use crate::outreach::runner::{contact_address, contact_time_zone, touches_today};
use crate::outreach::settings::{
    ParallelSequencePolicy, SettingsError, SettingsProvider, WorkspaceSettings,
};
use crate::store::{ComplianceStoreExt, EnrollerStore, EnrollmentFilter, Page, SequenceStore};

pub use definitions::{
    DefinitionError, SequenceEditor, SequenceUpdate, TemplatePart, check_channel_requirements,
    validate_templates,
};

/// One reason a contact cannot be enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// The contact already runs this sequence (`None` when a concurrent enrollment won
    /// the race and its id is not known).
    AlreadyEnrolled {
        /// The running enrollment.
        enrollment_id: Option<EnrollmentId>,
    },
    /// The contact runs another sequence and the workspace refuses parallel sequences.
    InAnotherSequence {
        /// The other sequence.
        sequence_id: SequenceId,
    },
    /// The contact reached the daily touch limit.
    DailyTouchLimitReached {
        /// Messages sent to the contact since the start of its local day.
        sent_today: u64,
        /// The workspace's limit.
        limit: u32,
    },
    /// The contact's address for a channel of the sequence is suppressed.
    Suppressed {
        /// The channel.
        channel: Channel,
        /// Why it is suppressed.
        reason: SuppressionReason,
    },
    /// The contact withdrew consent for a channel of the sequence.
    Unsubscribed {
        /// The channel.
        channel: Channel,
    },
    /// The contact has no address for a channel of the sequence.
    NoAddress {
        /// The channel.
        channel: Channel,
    },
    /// The sequence is archived and takes no new enrollments.
    SequenceArchived,
}

impl Conflict {
    /// A stable machine-readable code, e.g. `"already_enrolled"`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::AlreadyEnrolled { .. } => "already_enrolled",
            Self::InAnotherSequence { .. } => "in_another_sequence",
            Self::DailyTouchLimitReached { .. } => "daily_touch_limit_reached",
            Self::Suppressed { .. } => "suppressed",
            Self::Unsubscribed { .. } => "unsubscribed",
            Self::NoAddress { .. } => "no_address",
            Self::SequenceArchived => "sequence_archived",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyEnrolled { .. } => f.write_str("the contact already runs this sequence"),
            Self::InAnotherSequence { sequence_id } => {
                write!(
                    f,
                    "the contact runs sequence {sequence_id}; parallel sequences are refused"
                )
            }
            Self::DailyTouchLimitReached { sent_today, limit } => write!(
                f,
                "the contact got {sent_today} messages today; the daily limit is {limit}"
            ),
            Self::Suppressed { channel, reason } => {
                write!(
                    f,
                    "the contact's {channel} address is suppressed ({reason})"
                )
            }
            Self::Unsubscribed { channel } => {
                write!(f, "the contact withdrew consent for {channel}")
            }
            Self::NoAddress { channel } => write!(f, "the contact has no {channel} address"),
            Self::SequenceArchived => f.write_str("the sequence is archived"),
        }
    }
}

/// Why an enrollment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// Every reason that blocks the enrollment; nothing was enrolled.
    #[error("enrollment refused: {}", list(.0))]
    Conflicts(Vec<Conflict>),
    /// The store failed (an unknown contact or sequence is `NotFound`).
    #[error("enrollment store call failed")]
    Store(#[from] StoreError),
    /// The workspace's settings could not be read; nothing was checked or enrolled.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

fn list(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl EnrollError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflicts(_) => false,
            Self::Store(e) => e.is_retryable(),
            Self::Settings(e) => e.is_retryable(),
        }
    }

    /// The conflicts, if that is why it failed.
    #[must_use]
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            Self::Conflicts(c) => c,
            Self::Store(_) | Self::Settings(_) => &[],
        }
    }
}

/// Enrolls contacts in sequences after checking for conflicts.
#[derive(Debug, Clone)]
pub struct Enroller {
    store: Arc<dyn EnrollerStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
}

impl Enroller {
    /// An enroller over `store`, timed by `clock`, with the workspaces' `settings`.
    #[must_use]
    pub fn new(
        store: Arc<dyn EnrollerStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// Every conflict that would block enrolling the contact at the clock's now
    /// (empty: it may be enrolled). Writes nothing.
    pub async fn check(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        sequence_id: SequenceId,
    ) -> Result<Vec<Conflict>, EnrollError> {
        let now = self.clock.now();
        let sequence = self.store.get_sequence(workspace_id, sequence_id).await?;
        let contact = self.store.get_contact(workspace_id, contact_id).await?;
        let settings = self.settings.settings(workspace_id).await?;
        self.conflicts(&sequence, &contact, &settings, now).await
    }

    /// Enrolls the contact in the current version of the sequence, `Pending` and due
    /// at the clock's now (the runner starts it), unless a conflict blocks it.
    pub async fn enroll(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        sequence_id: SequenceId,
    ) -> Result<Enrollment, EnrollError> {
        let now = self.clock.now();
        let sequence = self.store.get_sequence(workspace_id, sequence_id).await?;
        let contact = self.store.get_contact(workspace_id, contact_id).await?;
        let settings = self.settings.settings(workspace_id).await?;
        let conflicts = self.conflicts(&sequence, &contact, &settings, now).await?;
        if !conflicts.is_empty() {
            return Err(EnrollError::Conflicts(conflicts));
        }
        let enrollment =
            Enrollment::new(workspace_id, sequence.id, sequence.version, contact.id, now);
        match self.store.insert_enrollment(&enrollment).await {
            Ok(stored) => Ok(stored),
            Err(e) if e.kind() == StoreErrorKind::Conflict => {
                Err(EnrollError::Conflicts(vec![Conflict::AlreadyEnrolled {
                    enrollment_id: None,
                }]))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn conflicts(
        &self,
        sequence: &Sequence,
        contact: &Contact,
        settings: &WorkspaceSettings,
        now: DateTime<Utc>,
    ) -> Result<Vec<Conflict>, EnrollError> {
        let ws = sequence.workspace_id;
        let mut conflicts = Vec::new();
        if sequence.status == SequenceStatus::Archived {
            conflicts.push(Conflict::SequenceArchived);
        }

        let running = running_enrollments(&*self.store, ws, contact.id).await?;
        let mut others = BTreeSet::new();
        for e in &running {
            if e.sequence_id == sequence.id {
                conflicts.push(Conflict::AlreadyEnrolled {
                    enrollment_id: Some(e.id),
                });
            } else if settings.parallel_sequences == ParallelSequencePolicy::Refuse {
                others.insert(e.sequence_id);
            }
        }
        conflicts.extend(
            others
                .into_iter()
                .map(|sequence_id| Conflict::InAnotherSequence { sequence_id }),
        );

        let tz = contact_time_zone(contact, settings);
        let sent_today = touches_today(&*self.store, ws, contact.id, tz, now).await?;
        if sent_today >= u64::from(settings.daily_touch_limit) {
            conflicts.push(Conflict::DailyTouchLimitReached {
                sent_today,
                limit: settings.daily_touch_limit,
            });
        }

        let mut seen = BTreeSet::new();
        for channel in sequence.steps.iter().map(|s| s.channel) {
            if channel == Channel::ManualTask || !seen.insert(channel) {
                continue;
            }
            let Some(address) = contact_address(contact, channel) else {
                conflicts.push(Conflict::NoAddress { channel });
                continue;
            };
            if let Some(s) = self.store.find_suppression(ws, channel, &address).await? {
                conflicts.push(Conflict::Suppressed {
                    channel,
                    reason: s.reason,
                });
            }
            let consent = self.store.current_consent(ws, contact.id, channel).await?;
            if consent.is_some_and(|c| c.status == ConsentStatus::Withdrawn) {
                conflicts.push(Conflict::Unsubscribed { channel });
            }
        }
        Ok(conflicts)
    }
}

/// Every running enrollment of a contact, across pages.
pub(crate) async fn running_enrollments(
    store: &dyn SequenceStore,
    workspace_id: WorkspaceId,
    contact_id: ContactId,
) -> Result<Vec<Enrollment>, StoreError> {
    let filter = EnrollmentFilter {
        contact_id: Some(contact_id),
        running_only: true,
        ..EnrollmentFilter::default()
    };
    all_enrollments(store, workspace_id, &filter).await
}

/// Every enrollment matching `filter`, across pages.
pub(crate) async fn all_enrollments(
    store: &dyn SequenceStore,
    workspace_id: WorkspaceId,
    filter: &EnrollmentFilter,
) -> Result<Vec<Enrollment>, StoreError> {
    let mut all = Vec::new();
    let mut page = Page::first(Page::<EnrollmentId>::MAX_LIMIT);
    loop {
        let batch = store.list_enrollments(workspace_id, filter, page).await?;
        let Some(last) = batch.last() else { break };
        page = Page::after(last.id, page.limit);
        let full = batch.len() >= page.limit as usize;
        all.extend(batch);
        if !full {
            break;
        }
    }
    Ok(all)
}
