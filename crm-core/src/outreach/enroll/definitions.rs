//! Saving sequence definitions: templates and each step's channel requirements checked
//! at save time, edits applied with an explicit in-flight policy.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind, ValidationError};
use crate::ids::{EnrollmentId, WorkspaceId};
use crate::model::{Channel, Contact, Enrollment, InFlightPolicy, NewContact, Sequence};
use crate::outreach::runner::workspace_booking_link;
use crate::outreach::settings::SettingsProvider;
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
    /// A variable of the step's WhatsApp template.
    WhatsAppVariable,
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
    /// A step lacks what its channel needs to be sent (see
    /// [`check_channel_requirements`]).
    #[error("step {step} ({channel}) needs {field}: {reason}")]
    ChannelRequirement {
        /// The step index (0-based).
        step: usize,
        /// The step's channel.
        channel: Channel,
        /// The missing field, e.g. `template.subject`.
        field: &'static str,
        /// What is missing, in words.
        reason: &'static str,
    },
    /// The definition breaks a model rule (no steps, a bad window, ...).
    #[error("invalid sequence definition")]
    Invalid(#[from] ValidationError),
    /// The store failed (a stale version is `VersionConflict`).
    #[error("sequence store call failed")]
    Store(#[from] StoreError),
    /// The workspace's settings could not be read, so its booking link is unknown: the
    /// definition is not saved rather than checked against a guess.
    #[error("workspace settings unavailable while checking the sequence")]
    Settings(#[from] crate::outreach::settings::SettingsError),
}

impl DefinitionError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Settings(e) => e.is_retryable(),
            Self::Template { .. } | Self::ChannelRequirement { .. } | Self::Invalid(_) => false,
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
        let variables = s
            .options
            .whatsapp_template
            .iter()
            .flat_map(|t| t.variables.values())
            .map(|v| (TemplatePart::WhatsAppVariable, Some(v.as_str())));
        let parts = [
            (TemplatePart::Subject, s.template.subject.as_deref()),
            (TemplatePart::Body, Some(s.template.body.as_str())),
        ]
        .into_iter()
        .chain(variables);
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

/// Checks that each step carries what its channel needs, naming the step and the
/// missing field:
///
/// - an `Email` step needs a subject (`template.subject`);
/// - a `WhatsApp` step needs an approved template with a `content_sid`
///   (`options.whatsapp_template`), unless it allows free-form text
///   (`options.allow_free_form`, sent only within 24 hours of the contact's last
///   message);
/// - a step using `{{booking_link}}` needs a booking link: its own
///   (`options.booking_link`) or the workspace's (`workspace_booking_link`, the
///   Cal.com channel's `booking_url` parameter).
pub fn check_channel_requirements(
    sequence: &Sequence,
    workspace_booking_link: Option<&str>,
) -> Result<(), DefinitionError> {
    let blank = |s: Option<&str>| s.is_none_or(|s| s.trim().is_empty());
    for (step, s) in sequence.steps.iter().enumerate() {
        let missing = |field, reason| DefinitionError::ChannelRequirement {
            step,
            channel: s.channel,
            field,
            reason,
        };
        if s.channel == Channel::Email && blank(s.template.subject.as_deref()) {
            return Err(missing("template.subject", "an email needs a subject"));
        }
        if s.channel == Channel::WhatsApp {
            match &s.options.whatsapp_template {
                Some(t) if t.content_sid.trim().is_empty() => {
                    return Err(missing(
                        "options.whatsapp_template.content_sid",
                        "the WhatsApp template needs its id (Twilio ContentSid)",
                    ));
                }
                Some(_) => {}
                None if s.options.allow_free_form => {}
                None => {
                    return Err(missing(
                        "options.whatsapp_template",
                        "outside 24 hours of the contact's last message WhatsApp sends only an approved template; set one or allow free-form text",
                    ));
                }
            }
        }
        let texts = [
            s.template.subject.as_deref(),
            Some(s.template.body.as_str()),
        ]
        .into_iter()
        .flatten()
        .chain(
            s.options
                .whatsapp_template
                .iter()
                .flat_map(|t| t.variables.values().map(String::as_str)),
        );
        let mut uses_link = false;
        for text in texts {
            // Syntax errors are validate_templates' to report.
            if fields(text).is_ok_and(|f| f.contains(&"booking_link")) {
                uses_link = true;
            }
        }
        if uses_link && blank(s.options.booking_link.as_deref()) && blank(workspace_booking_link) {
            return Err(missing(
                "booking_link",
                "the step uses {{booking_link}} but neither it nor the workspace has a booking link",
            ));
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
    settings: Option<Arc<dyn SettingsProvider>>,
}

impl SequenceEditor {
    /// An editor over `store`, timed by `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn SequenceStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            settings: None,
        }
    }

    /// Reads the workspace's settings when checking steps (its Cal.com booking link).
    /// Without them only a step's own booking link counts.
    #[must_use]
    pub fn with_settings(mut self, settings: Arc<dyn SettingsProvider>) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Validates the templates and the steps' channel requirements, then inserts a new
    /// sequence (version 1).
    pub async fn create(&self, sequence: &Sequence) -> Result<Sequence, DefinitionError> {
        self.check(sequence).await?;
        Ok(self.store.insert_sequence(sequence).await?)
    }

    /// [`validate_templates`] and [`check_channel_requirements`] with the workspace's
    /// booking link.
    pub async fn check(&self, sequence: &Sequence) -> Result<(), DefinitionError> {
        validate_templates(sequence)?;
        let link = match &self.settings {
            Some(p) => workspace_booking_link(&p.settings(sequence.workspace_id).await?),
            None => None,
        };
        check_channel_requirements(sequence, link.as_deref())
    }

    /// Saves an edited definition as a new version (compare-and-set on
    /// `sequence.version`), recording `policy` as the sequence's in-flight policy. The
    /// stored status is kept (see [`SequenceControl`](crate::outreach::control::SequenceControl)).
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
        // Status changes go through `SequenceControl` (which stops or wakes
        // enrollments with them); an edit keeps the stored status.
        let current = self
            .store
            .get_sequence(sequence.workspace_id, sequence.id)
            .await?;
        edited.status = current.status;
        self.check(&edited).await?;
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
    use crate::model::{SequenceStep, StepDelay, Template, WhatsAppTemplate};

    fn sequence(subject: Option<&str>, body: &str) -> Sequence {
        let step = SequenceStep::new(
            Channel::Email,
            Template {
                subject: subject.map(str::to_owned),
                body: body.to_owned(),
            },
            StepDelay::Hours(0),
        );
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

    fn requirement(result: Result<(), DefinitionError>) -> Option<(usize, &'static str)> {
        match result {
            Err(DefinitionError::ChannelRequirement { step, field, .. }) => Some((step, field)),
            _ => None,
        }
    }

    #[test]
    fn each_step_is_checked_against_its_channel() {
        let no_subject = sequence(None, "Hi");
        assert_eq!(
            requirement(check_channel_requirements(&no_subject, None)),
            Some((0, "template.subject"))
        );

        let mut whatsapp = sequence(Some("Hi"), "Hi {{first_name}}");
        whatsapp.steps.push(SequenceStep::new(
            Channel::WhatsApp,
            Template {
                subject: None,
                body: "Hi".into(),
            },
            StepDelay::Hours(1),
        ));
        assert_eq!(
            requirement(check_channel_requirements(&whatsapp, None)),
            Some((1, "options.whatsapp_template"))
        );
        whatsapp.steps[1].options.allow_free_form = true;
        check_channel_requirements(&whatsapp, None).unwrap();
        whatsapp.steps[1].options.whatsapp_template = Some(WhatsAppTemplate {
            content_sid: " ".into(),
            variables: [("1".to_owned(), "{{booking_link}}".to_owned())].into(),
        });
        assert_eq!(
            requirement(check_channel_requirements(&whatsapp, None)),
            Some((1, "options.whatsapp_template.content_sid"))
        );
        if let Some(t) = &mut whatsapp.steps[1].options.whatsapp_template {
            t.content_sid = "HX123".into();
        }
        assert_eq!(
            requirement(check_channel_requirements(&whatsapp, None)),
            Some((1, "booking_link")),
            "a template variable using the booking link needs one"
        );
        check_channel_requirements(&whatsapp, Some("https://cal.com/acme")).unwrap();
        whatsapp.steps[1].options.booking_link = Some("https://cal.com/ada".into());
        check_channel_requirements(&whatsapp, None).unwrap();
        validate_templates(&whatsapp).unwrap();
    }
}
