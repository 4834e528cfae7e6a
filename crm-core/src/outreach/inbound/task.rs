//! Handling one inbound event: resolving the contact, writing suppressions, consent
//! and activities, and moving enrollments with compare-and-set.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{InboundApplied, InboundError, InboundOutcome};
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crate::model::{
    Activity, ActivityKind, Actor, AuditEntry, Channel, Consent, ConsentStatus, Contact,
    Enrollment, EnrollmentState, Suppression, SuppressionReason,
};
use crate::outreach::enroll::{all_enrollments, running_enrollments};
use crate::outreach::enrollment::{Effect, EnrollmentEvent, TransitionError, transition};
use crate::outreach::runner::{Definitions, step_count};
use crate::outreach::settings::WorkspaceSettings;
use crate::store::InboundHandlerStore;
use crate::store::{ActivityFilter, ComplianceStoreExt, EnrollmentFilter, StoppedSends};

/// How often one enrollment is re-read and retried when it changes under the handler.
const CAS_ATTEMPTS: usize = 5;

/// A short, stable hash of an event's identifying parts, stored with its activity so a
/// redelivered event is not recorded twice (the text itself is not stored).
pub(super) fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One inbound event being handled, with what handling it has changed so far.
pub(super) struct InboundTask<'s> {
    pub(super) store: &'s dyn InboundHandlerStore,
    pub(super) settings: WorkspaceSettings,
    pub(super) workspace_id: WorkspaceId,
    pub(super) now: DateTime<Utc>,
    pub(super) definitions: Definitions<'s>,
    /// The provider's id of the delivery that brought the event, when known: part of
    /// the fingerprint of provider events that carry nothing else to tell two apart
    /// (two opens of one message are two deliveries).
    pub(super) delivery_id: Option<&'s str>,
    pub(super) out: InboundApplied,
}

impl InboundTask<'_> {
    pub(super) fn done(self) -> InboundOutcome {
        InboundOutcome::Handled(self.out)
    }

    /// The contact (and the enrollment, when a provider id names our message).
    pub(super) async fn resolve(
        &mut self,
        channel: Channel,
        provider_message_id: Option<&str>,
        address: Option<&str>,
    ) -> Result<(Option<Contact>, Option<EnrollmentId>), StoreError> {
        let ws = self.workspace_id;
        if let Some(pid) = provider_message_id
            && let Some(message) = self.store.find_outbox_by_provider_id(ws, pid).await?
            && let Some(contact_id) = message.contact_id
        {
            match self.store.get_contact(ws, contact_id).await {
                Ok(contact) => {
                    self.out.contact_id = Some(contact.id);
                    self.out.outbox_message_id = Some(message.id);
                    return Ok((Some(contact), message.enrollment_id));
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let contact = match address {
            Some(address) => {
                self.store
                    .find_contact_by_address(ws, channel, address)
                    .await?
            }
            None => None,
        };
        self.out.contact_id = contact.as_ref().map(|c| c.id);
        Ok((contact, None))
    }

    /// Suppresses the address, withdraws consent and unsubscribes the contact.
    pub(super) async fn opt_out(
        &mut self,
        channel: Channel,
        provider_message_id: Option<&str>,
        address: &str,
        reason: SuppressionReason,
    ) -> Result<(), InboundError> {
        self.suppress(channel, address, reason).await?;
        let (contact, enrollment) = self
            .resolve(channel, provider_message_id, Some(address))
            .await?;
        let Some(contact) = contact else {
            return Ok(());
        };
        self.withdraw_consent(&contact, channel).await?;
        self.transition_contact(
            &contact,
            enrollment,
            &EnrollmentEvent::Unsubscribed,
            "contact opted out",
        )
        .await?;
        Ok(())
    }

    pub(super) async fn suppress(
        &mut self,
        channel: Channel,
        address: &str,
        reason: SuppressionReason,
    ) -> Result<(), StoreError> {
        let Ok(entry) =
            Suppression::new(self.workspace_id, Some(channel), address, reason, self.now)
        else {
            // A blank address cannot be suppressed; the contact is still handled.
            return Ok(());
        };
        let added = self.store.add_suppression(&entry).await?;
        self.out.suppressed |= added.created;
        self.note_stopped(added.stopped);
        Ok(())
    }

    pub(super) async fn withdraw_consent(
        &mut self,
        contact: &Contact,
        channel: Channel,
    ) -> Result<(), StoreError> {
        let ws = self.workspace_id;
        let current = self.store.current_consent(ws, contact.id, channel).await?;
        if current.is_some_and(|c| c.status == ConsentStatus::Withdrawn) {
            return Ok(());
        }
        let consent = Consent::new(
            ws,
            contact.id,
            channel,
            ConsentStatus::Withdrawn,
            "inbound opt-out",
            self.now,
        )?;
        let recorded = self.store.record_consent(&consent).await?;
        self.out.consent_withdrawn = true;
        self.note_stopped(recorded.stopped);
        Ok(())
    }

    /// Reports what an opt-out stopped: the sends it cancelled and those already in
    /// flight (once each, whichever write found them).
    fn note_stopped(&mut self, stopped: StoppedSends) {
        for id in stopped.cancelled {
            if !self.out.cancelled_messages.contains(&id) {
                self.out.cancelled_messages.push(id);
            }
        }
        for id in stopped.in_flight {
            if !self.out.in_flight_messages.contains(&id) {
                self.out.in_flight_messages.push(id);
            }
        }
    }

    /// Records an activity unless one of the same kind with the same fingerprint exists.
    pub(super) async fn activity(
        &mut self,
        contact: &Contact,
        kind: ActivityKind,
        summary: &str,
        channel: Option<Channel>,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let filter = ActivityFilter {
            contact_id: Some(contact.id),
            kinds: vec![kind],
            ..ActivityFilter::default()
        };
        let recent = self
            .store
            .list_activities(self.workspace_id, &filter, 100)
            .await?;
        if recent
            .iter()
            .any(|a| a.details.get("fingerprint") == details.get("fingerprint"))
        {
            return Ok(());
        }
        let mut activity =
            Activity::for_contact(self.workspace_id, contact.id, kind, summary, self.now)?
                .with_details(details);
        activity.channel = channel;
        activity.outbox_message_id = self.out.outbox_message_id;
        self.store.record_activity(&activity).await?;
        self.out.activity_recorded = true;
        Ok(())
    }

    /// Applies `event` to the contact's running enrollments and to `also` (the
    /// enrollment a provider id named, which may have ended, e.g. `NoResponse` before a
    /// late reply). Returns the enrollments now in the event's target state.
    pub(super) async fn transition_contact(
        &mut self,
        contact: &Contact,
        also: Option<EnrollmentId>,
        event: &EnrollmentEvent,
        reason: &str,
    ) -> Result<Vec<Enrollment>, InboundError> {
        let mut targets = running_enrollments(self.store, self.workspace_id, contact.id).await?;
        if let Some(id) = also
            && !targets.iter().any(|e| e.id == id)
        {
            match self.store.get_enrollment(self.workspace_id, id).await {
                Ok(e) if e.contact_id == contact.id => targets.push(e),
                Ok(_) => {}
                Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut now_in_state = Vec::new();
        for enrollment in targets {
            let id = enrollment.id;
            match self.apply(enrollment, event, reason).await? {
                Some(e) => {
                    self.out.changed.push(id);
                    now_in_state.push(e);
                }
                None => self.out.unchanged.push(id),
            }
        }
        Ok(now_in_state)
    }

    /// Stops the same-sequence enrollments of the contact's account colleagues.
    pub(super) async fn account_stop(
        &mut self,
        contact: &Contact,
        replied: &[Enrollment],
    ) -> Result<(), InboundError> {
        let Some(account_id) = contact.account_id else {
            return Ok(());
        };
        let mut sequences: BTreeSet<SequenceId> = replied.iter().map(|e| e.sequence_id).collect();
        // A redelivered reply changes nothing itself; still finish the account stop.
        for id in &self.out.unchanged {
            if let Ok(e) = self.store.get_enrollment(self.workspace_id, *id).await
                && e.state == EnrollmentState::Replied
            {
                sequences.insert(e.sequence_id);
            }
        }
        let mut accounts: HashMap<ContactId, bool> = HashMap::new();
        for sequence_id in sequences {
            let filter = EnrollmentFilter {
                sequence_id: Some(sequence_id),
                running_only: true,
                ..EnrollmentFilter::default()
            };
            for other in all_enrollments(self.store, self.workspace_id, &filter).await? {
                if other.contact_id == contact.id {
                    continue;
                }
                let same = match accounts.get(&other.contact_id) {
                    Some(same) => *same,
                    None => {
                        let c = self
                            .store
                            .get_contact(self.workspace_id, other.contact_id)
                            .await?;
                        let same = c.account_id == Some(account_id);
                        accounts.insert(other.contact_id, same);
                        same
                    }
                };
                if !same {
                    continue;
                }
                let id = other.id;
                if self
                    .apply(other, &account_stop_event(), "account replied")
                    .await?
                    .is_some()
                {
                    self.out.account_stopped.push(id);
                    let entry = AuditEntry::new(
                        self.workspace_id,
                        Actor::System,
                        "outreach.account_stop",
                        id.to_string(),
                        json!({ "reason": "account replied", "replied_contact_id": contact.id, "sequence_id": sequence_id }),
                        self.now,
                    )
                    .map_err(StoreError::from)?;
                    self.store.append_audit(&entry).await?;
                }
            }
        }
        Ok(())
    }

    /// Applies `event` to one enrollment with compare-and-set, re-reading on conflict.
    /// `None` when it does not apply (ended, already paused).
    async fn apply(
        &mut self,
        mut enrollment: Enrollment,
        event: &EnrollmentEvent,
        reason: &str,
    ) -> Result<Option<Enrollment>, InboundError> {
        for _ in 0..CAS_ATTEMPTS {
            let n = step_count(&*self.definitions.for_enrollment(&enrollment).await?);
            // Every step is sent and only the reply wait is left: nothing to pause.
            if matches!(event, EnrollmentEvent::OutOfOffice { .. })
                && enrollment.state == EnrollmentState::StepSent
                && enrollment.current_step >= n
            {
                return Ok(None);
            }
            let t = match transition(&enrollment, n, event) {
                Ok(t) => t,
                Err(TransitionError::Ended { .. } | TransitionError::Illegal { .. }) => {
                    return Ok(None);
                }
                Err(TransitionError::WrongStep { .. }) => return Ok(None),
            };
            let cancel_queued = t
                .effects
                .contains(&Effect::CancelQueuedMessages)
                .then(|| reason.to_owned());
            let change = crate::store::EnrollmentChange {
                enrollment: t.applied_to(&enrollment, self.now),
                enqueue: None,
                cancel_queued,
                now: self.now,
            };
            match self.store.advance_enrollment(&change).await {
                Ok(advanced) => {
                    self.out.cancelled_messages.extend(advanced.cancelled);
                    return Ok(Some(advanced.enrollment));
                }
                Err(e) if e.kind() == StoreErrorKind::VersionConflict => {
                    enrollment = self
                        .store
                        .get_enrollment(self.workspace_id, enrollment.id)
                        .await?;
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Err(InboundError::Contended {
            enrollment_id: enrollment.id,
        })
    }
}

/// The account-level stop: `Stopped` with its own reason, so it is told apart from a
/// booked meeting or the contact's own reply.
fn account_stop_event() -> EnrollmentEvent {
    EnrollmentEvent::Stop {
        reason: crate::model::end_reasons::ACCOUNT_REPLY.to_owned(),
    }
}
