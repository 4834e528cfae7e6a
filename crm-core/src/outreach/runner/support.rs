//! Helpers the outreach services share: addresses per channel, the contact's time
//! zone, touches of the local day, and a per-pass cache of sequence definitions.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::StoreError;
use crate::ids::{ContactId, SequenceId, WorkspaceId};
use crate::model::{ActivityKind, Channel, Contact, Enrollment, InFlightPolicy, Sequence};
use crate::outreach::schedule::{local_day, start_of_next_day};
use crate::outreach::settings::WorkspaceSettings;
use crate::store::{ActivityFilter, ActivityStore, SequenceStore};

/// The address `contact` is reached at on `channel`: the email for `Email` and
/// `CalCom`, the phone for `WhatsApp` and `Sms`, the Instagram id for `Instagram`, the
/// profile URL for `LinkedIn`. `ManualTask` needs no address and has none.
#[must_use]
pub fn contact_address(contact: &Contact, channel: Channel) -> Option<String> {
    let non_blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match channel {
        Channel::Email | Channel::CalCom => contact.email.as_ref().map(ToString::to_string),
        Channel::WhatsApp | Channel::Sms => contact.phone.as_ref().map(ToString::to_string),
        Channel::Instagram => non_blank(&contact.instagram_id),
        Channel::LinkedIn => non_blank(&contact.linkedin_url),
        Channel::ManualTask => None,
    }
}

/// Host-provided merge values, available to templates as `extra.<name>` (a booking
/// link, a sender name). Values may depend on the workspace and the contact (its
/// owner, say).
#[async_trait]
pub trait MergeValues: Send + Sync + Debug + 'static {
    /// The `extra.*` values for rendering a step to `contact`.
    async fn values(
        &self,
        workspace_id: WorkspaceId,
        contact: &Contact,
    ) -> BTreeMap<String, String>;
}

/// The same merge values for every workspace and contact.
#[derive(Debug, Clone, Default)]
pub struct StaticMergeValues(pub BTreeMap<String, String>);

#[async_trait]
impl MergeValues for StaticMergeValues {
    async fn values(&self, _: WorkspaceId, _: &Contact) -> BTreeMap<String, String> {
        self.0.clone()
    }
}

/// The `extra.*` values for `contact`, empty without a provider.
pub(crate) async fn extra_values(
    provider: Option<&Arc<dyn MergeValues>>,
    workspace_id: WorkspaceId,
    contact: &Contact,
) -> BTreeMap<String, String> {
    match provider {
        Some(p) => p.values(workspace_id, contact).await,
        None => BTreeMap::new(),
    }
}

/// The recipient written on an outbox message for a manual task, which has no address:
/// `contact:<id>`.
pub(crate) fn manual_task_recipient(contact_id: ContactId) -> String {
    format!("contact:{contact_id}")
}

/// The contact's IANA time zone, or the workspace default.
pub(crate) fn contact_time_zone(contact: &Contact, settings: &WorkspaceSettings) -> Tz {
    contact.time_zone.unwrap_or(settings.default_time_zone)
}

/// The instant the local day of `at` began in `tz`.
pub(crate) fn start_of_local_day(tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    local_day(tz, at)
        .pred_opt()
        .map_or(at, |yesterday| start_of_next_day(tz, yesterday))
}

/// Messages sent to the contact since the start of its local day (`MessageSent`
/// activities, every channel).
pub(crate) async fn touches_today<S: ActivityStore + ?Sized>(
    store: &S,
    workspace_id: WorkspaceId,
    contact_id: ContactId,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let filter = ActivityFilter {
        contact_id: Some(contact_id),
        kinds: vec![ActivityKind::MessageSent],
        since: Some(start_of_local_day(tz, now)),
        ..ActivityFilter::default()
    };
    store.count_activities(workspace_id, &filter).await
}

/// The step count as the state machine takes it.
pub(crate) fn step_count(sequence: &Sequence) -> i32 {
    i32::try_from(sequence.steps.len()).unwrap_or(i32::MAX)
}

/// Sequence definitions loaded once per pass over a workspace.
#[derive(Debug)]
pub(crate) struct Definitions<'s> {
    store: &'s dyn SequenceStore,
    workspace_id: WorkspaceId,
    latest: HashMap<SequenceId, Arc<Sequence>>,
    versions: HashMap<(SequenceId, i64), Arc<Sequence>>,
}

impl<'s> Definitions<'s> {
    pub(crate) fn new(store: &'s dyn SequenceStore, workspace_id: WorkspaceId) -> Self {
        Self {
            store,
            workspace_id,
            latest: HashMap::new(),
            versions: HashMap::new(),
        }
    }

    /// Reads the current definitions of the sequences of `due` ahead of time. A
    /// definition that cannot be read is not kept: the enrollment that needs it reads
    /// it again and reports the error.
    pub(crate) async fn preload(&mut self, due: &[Enrollment]) {
        let mut ids: Vec<SequenceId> = due.iter().map(|e| e.sequence_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Err(error) = self.latest(id).await {
                tracing::debug!(sequence_id = %id, error = %error, "outreach runner: sequence not preloaded");
            }
        }
    }

    /// The current definition of a sequence.
    pub(crate) async fn latest(&mut self, id: SequenceId) -> Result<Arc<Sequence>, StoreError> {
        if let Some(found) = self.latest.get(&id) {
            return Ok(Arc::clone(found));
        }
        let sequence = Arc::new(self.store.get_sequence(self.workspace_id, id).await?);
        self.latest.insert(id, Arc::clone(&sequence));
        Ok(sequence)
    }

    /// The definition `enrollment` runs on: the version it records, or the latest one
    /// when the sequence's in-flight policy is `Migrate`.
    pub(crate) async fn for_enrollment(
        &mut self,
        enrollment: &Enrollment,
    ) -> Result<Arc<Sequence>, StoreError> {
        let latest = self.latest(enrollment.sequence_id).await?;
        if latest.version == enrollment.sequence_version
            || latest.in_flight_policy == InFlightPolicy::Migrate
        {
            return Ok(latest);
        }
        let key = (enrollment.sequence_id, enrollment.sequence_version);
        if let Some(found) = self.versions.get(&key) {
            return Ok(Arc::clone(found));
        }
        let old = Arc::new(
            self.store
                .get_sequence_version(self.workspace_id, key.0, key.1)
                .await?,
        );
        self.versions.insert(key, Arc::clone(&old));
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewContact;
    use chrono::TimeZone;

    #[test]
    fn addresses_follow_the_channel() {
        let contact = Contact::create(
            WorkspaceId::new(),
            NewContact {
                first_name: "Ada".into(),
                email: Some("ada@example.com".into()),
                linkedin_url: Some("  ".into()),
                ..NewContact::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            contact_address(&contact, Channel::CalCom).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(contact_address(&contact, Channel::WhatsApp), None);
        assert_eq!(contact_address(&contact, Channel::LinkedIn), None);
        assert_eq!(contact_address(&contact, Channel::ManualTask), None);
    }

    #[test]
    fn the_local_day_starts_at_local_midnight() {
        let at = Utc.with_ymd_and_hms(2026, 1, 6, 23, 30, 0).unwrap(); // 00:30 Berlin
        assert_eq!(
            start_of_local_day(chrono_tz::Europe::Berlin, at),
            Utc.with_ymd_and_hms(2026, 1, 6, 23, 0, 0).unwrap()
        );
    }
}
