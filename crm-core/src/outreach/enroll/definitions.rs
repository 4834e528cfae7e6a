//! Saving sequence definitions: templates checked at save time, edits applied with an
//! explicit in-flight policy.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind, ValidationError};
use crate::ids::{EnrollmentId, WorkspaceId};
use crate::model::{Contact, Enrollment, InFlightPolicy, NewContact, Sequence};
use crate::outreach::template::{MergeContext, TemplateError, fields};
use crate::store::{EnrollmentFilter, SequenceStore};

use super::all_enrollments;

/// How often a migration retries one enrollment that keeps changing under it.
const MIGRATE_ATTEMPTS: usize = 5;

/// Which part of a step's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart {
    /// The subject line.
    Subject,
    /// The body.
    Body,
}

/// Why a sequence definition was refused or could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// A template has bad syntax or names a merge field the engine does not know.
    #[error("step {step} {part:?} template is invalid")]
    Template {
        /// The step index (0-based).
        step: usize,
        /// Subject or body.
        part: TemplatePart,
        /// What is wrong.
        #[source]
        source: TemplateError,
    },
    /// The definition breaks a model rule (no steps, a bad window, ...).
    #[error("invalid sequence definition")]
    Invalid(#[from] ValidationError),
    /// The store failed (a stale version is `VersionConflict`).
    #[error("sequence store call failed")]
    Store(#[from] StoreError),
}

impl DefinitionError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Template { .. } | Self::Invalid(_) => false,
        }
    }
}

/// Checks every template of `sequence`: syntax, and that each merge field is one the
/// engine knows (`first_name`, `account.domain`, `custom.*`, `extra.*`, ...). Whether a
/// field has a value is only known per contact, when the runner renders.
pub fn validate_templates(sequence: &Sequence) -> Result<(), DefinitionError> {
    sequence.validate()?;
    // A stand-in contact: `lookup` tells a known field from an unknown one without
    // caring about values.
    let probe = Contact::create(
        WorkspaceId::new(),
        NewContact {
            first_name: "probe".into(),
            ..NewContact::default()
        },
        DateTime::UNIX_EPOCH,
    )?;
    let ctx = MergeContext::new(&probe, None);
    for (step, s) in sequence.steps.iter().enumerate() {
        let parts = [
            (TemplatePart::Subject, s.template.subject.as_deref()),
            (TemplatePart::Body, Some(s.template.body.as_str())),
        ];
        for (part, text) in parts {
            let Some(text) = text else { continue };
            let fail = |source| DefinitionError::Template { step, part, source };
            for field in fields(text).map_err(fail)? {
                ctx.lookup(field).map_err(fail)?;
            }
        }
    }
    Ok(())
}

/// What [`SequenceEditor::update`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SequenceUpdate {
    /// The sequence as stored (new version).
    pub sequence: Sequence,
    /// Running enrollments moved to the new version (`Migrate`).
    pub migrated: Vec<EnrollmentId>,
    /// Running enrollments left on their version (`KeepVersion`, or finished while
    /// being migrated).
    pub kept: Vec<EnrollmentId>,
}

/// Creates and edits sequence definitions.
#[derive(Debug, Clone)]
pub struct SequenceEditor {
    store: Arc<dyn SequenceStore>,
    clock: Arc<dyn Clock>,
}

impl SequenceEditor {
    /// An editor over `store`, timed by `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn SequenceStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Validates the templates and inserts a new sequence (version 1).
    pub async fn create(&self, sequence: &Sequence) -> Result<Sequence, DefinitionError> {
        validate_templates(sequence)?;
        Ok(self.store.insert_sequence(sequence).await?)
    }

    /// Saves an edited definition as a new version (compare-and-set on
    /// `sequence.version`), recording `policy` as the sequence's in-flight policy.
    ///
    /// - `KeepVersion`: running enrollments finish on the version they run on.
    /// - `Migrate`: every running enrollment is moved to the new version, each with
    ///   compare-and-set (re-read and retried when it changed meanwhile). Its
    ///   `current_step` index is kept; the runner parks one whose step no longer exists.
    ///   The runner also reads the latest version for a `Migrate` sequence, so an
    ///   enrollment this call could not reach still runs on the new definition.
    pub async fn update(
        &self,
        sequence: &Sequence,
        policy: InFlightPolicy,
    ) -> Result<SequenceUpdate, DefinitionError> {
        let now = self.clock.now();
        let mut edited = sequence.clone();
        edited.in_flight_policy = policy;
        edited.updated_at = now;
        validate_templates(&edited)?;
        let stored = self.store.update_sequence(&edited).await?;
        let filter = EnrollmentFilter {
            sequence_id: Some(stored.id),
            running_only: true,
            ..EnrollmentFilter::default()
        };
        let running = all_enrollments(&*self.store, stored.workspace_id, &filter).await?;
        let mut update = SequenceUpdate {
            sequence: stored,
            migrated: Vec::new(),
            kept: Vec::new(),
        };
        for enrollment in running {
            let id = enrollment.id;
            let moved = policy == InFlightPolicy::Migrate
                && self
                    .migrate(enrollment, update.sequence.version, now)
                    .await?;
            if moved {
                update.migrated.push(id);
            } else {
                update.kept.push(id);
            }
        }
        Ok(update)
    }

    /// Moves one enrollment to `version`; `false` if it stopped running meanwhile.
    async fn migrate(
        &self,
        mut enrollment: Enrollment,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, DefinitionError> {
        for _ in 0..MIGRATE_ATTEMPTS {
            if !enrollment.state.is_running() {
                return Ok(false);
            }
            if enrollment.sequence_version >= version {
                return Ok(true);
            }
            let moved = Enrollment {
                sequence_version: version,
                updated_at: now,
                ..enrollment.clone()
            };
            match self.store.update_enrollment(&moved).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == StoreErrorKind::VersionConflict => {
                    enrollment = self
                        .store
                        .get_enrollment(enrollment.workspace_id, enrollment.id)
                        .await?;
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, SequenceStep, StepDelay, Template};

    fn sequence(subject: Option<&str>, body: &str) -> Sequence {
        let step = SequenceStep {
            channel: Channel::Email,
            template: Template {
                subject: subject.map(str::to_owned),
                body: body.to_owned(),
            },
            delay: StepDelay::Hours(0),
            window: None,
            requires_approval: false,
        };
        Sequence::create(WorkspaceId::new(), "Test", vec![step], DateTime::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn known_fields_pass_and_unknown_or_malformed_fail_at_save_time() {
        let ok = sequence(
            Some("Hi {{first_name}}"),
            "{{company}} {{custom.pain}} {{extra.booking_link}} {{last_name | there}}",
        );
        validate_templates(&ok).unwrap();

        let unknown = sequence(None, "Hi {{shoe_size}}");
        assert!(matches!(
            validate_templates(&unknown),
            Err(DefinitionError::Template {
                step: 0,
                part: TemplatePart::Body,
                source: TemplateError::UnknownField { .. }
            })
        ));
        let malformed = sequence(Some("Hi {{first_name"), "Body");
        assert!(matches!(
            validate_templates(&malformed),
            Err(DefinitionError::Template {
                part: TemplatePart::Subject,
                source: TemplateError::Malformed { .. },
                ..
            })
        ));
    }
}
