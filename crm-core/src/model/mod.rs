//! The domain model: entities every engine and store shares.
//!
//! Entities are plain data with public fields, a validating constructor
//! (`create`/`new`) and a `validate` method that stores call on every write. Every
//! entity carries its [`WorkspaceId`](crate::ids::WorkspaceId); mutable entities carry a
//! `version` for compare-and-set updates.

mod activity;
mod anomaly;
mod api_key;
mod approval;
pub mod catalogue;
mod channel;
mod channel_config;
mod compliance;
mod contact;
mod deal;
mod debug;
pub mod enrichment;
mod event;
mod intake;
mod job;
mod lease;
mod outbox;
mod provenance;
pub mod rules;
pub mod scoring;
mod sequence;
mod settings;
mod time_zone_serde;
mod workspace;

pub use activity::{Activity, ActivityKind};
pub use anomaly::{Actor, Anomaly, AnomalyStatus, AuditEntry, Severity};
pub(crate) use api_key::is_url_safe;
pub use api_key::{API_KEY_PREFIX_LEN, ApiKey, ApiKeyRecord, ApiScope, TokenHash, is_prefix};
pub use approval::{ApprovalItem, ApprovalRule, ApprovalStatus, RuleConditions};
pub use channel::Channel;
pub use channel_config::ChannelConfig;
pub use compliance::{Consent, ConsentStatus, Suppression, SuppressionReason, normalize_address};
pub use contact::{Account, Contact, NewAccount, NewContact, parse_time_zone};
pub use deal::{Deal, NewDeal, Pipeline, Stage, StageOutcome};
pub use event::{Event, NewEvent};
pub(crate) use intake::contains_nul;
pub use intake::{Fingerprint, IntakeRecord, IntakeSource, IntakeStatus, RowError};
pub use job::{Job, JobStatus};
pub use lease::{Lease, LeaseGrant};
pub use outbox::{OutboxMessage, OutboxStatus};
pub use provenance::FieldProvenance;
pub use sequence::{
    Enrollment, EnrollmentState, InFlightPolicy, SendWindow, Sequence, SequenceStatus,
    SequenceStep, StepDelay, StepFailurePolicy, StepOptions, Template, WhatsAppTemplate,
    end_reasons,
};
pub use settings::{
    Allowlist, MAX_ALLOWLIST_ENTRIES, MAX_DAILY_CAP, MAX_DAILY_TOUCH_LIMIT,
    MAX_OUT_OF_OFFICE_PAUSE_DAYS, MeetingBookedPolicy, ParallelSequencePolicy, WorkspaceSettings,
};
pub use workspace::Workspace;
