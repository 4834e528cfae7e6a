//! The persistence boundary.
//!
//! [`Store`] is an umbrella over focused repository traits, implemented for every type
//! that implements them all. An engine asks only for the repository it uses, for
//! example `Arc<dyn OutboxStore>`, or the named port of its engine (see [`DispatcherStore`]
//! and its siblings); a host holds one `Arc<DynStore>` and upcasts. Single-item
//! conveniences over the batched methods are in extension traits
//! ([`ComplianceStoreExt`], [`EventStoreExt`], [`ApprovalStoreExt`]).
//!
//! # Contract shared by every repository
//! - Every method is scoped to a workspace: it never reads, returns or changes a row of
//!   another workspace. A row of another workspace looks exactly like a missing row.
//!   (The workspace registry, [`WorkspaceStore`], is the one exception: its rows are
//!   the workspaces, and listing them is how engines find every tenant.)
//! - Each method is atomic on its own. There is no generic transaction; operations that
//!   must change several rows together are single methods (for example
//!   [`OutboxStore::mark_outbox_sent`]).
//! - Versioned rows are written with compare-and-set: `update_*` succeeds only if the
//!   caller's `version` is the stored one, and stores `version + 1`.
//! - Inputs are validated; bad input is `StoreError::Invalid`, never a panic. Every
//!   insert of a versioned row requires `version == 1`; every `limit` is 1 to 1000.
//! - Lease-checked methods (claims of jobs and outbox messages) answer `NotFound` for a
//!   row that does not exist in the workspace, and `LeaseLost` for a row that exists
//!   but is not held with the given token. Fencing tokens start at 1 with the first
//!   claim and grow by one with every later claim of the same row; every method that
//!   ends a claim (complete, retry, dead-letter, release, reschedule, mark sent, finish,
//!   reap) clears the lease but keeps the token.
//! - Time is the caller's `now`, never the backend's clock. Processes sharing a store
//!   may disagree by up to [`MAX_CLOCK_SKEW`]; leases and claims stay exclusive under
//!   that skew because no one but the holder takes over (or reaps) a lease before
//!   `expires_at + MAX_CLOCK_SKEW` by its own clock.
//! - Timestamps are kept to the microsecond (PostgreSQL's precision); a backend MAY
//!   truncate finer parts. The engine's [`Clock`](crate::Clock)s tick in whole
//!   microseconds, so rows written with their time read back unchanged.
//! - A state-changing method appends the catalogue events of its change
//!   ([`crate::events`]) in the same atomic step: the change and its events are
//!   written together or not at all, each event idempotent on its key so a retried
//!   call never appends one twice, and a refused call appends nothing. Those events
//!   are *unrouted* ([`EventStore::list_unrouted_events`]) until the engine's event
//!   router (in the `jobs` engine) enqueues their jobs. Which method
//!   appends which event is listed in the catalogue; in short: contact, account,
//!   deal and sequence inserts and updates; every activity recorded (by
//!   `record_activity` or with a send or a failure); enrollment inserts and every
//!   enrollment state change (by update, change-set or send); outbox messages
//!   reaching a final status; approval items requested and leaving `Pending`;
//!   anomalies opened and resolved; effective score or tier changes. Intake's
//!   [`IntakeStore::complete_intake`] is the exception that proves the rule: its
//!   completion carries the contact's one event (`contact.created` or
//!   `contact.merged`), so the contact write appends no other.
//!
//! - A write that queues a job or makes an outbox message pending signals the store's
//!   [`Wakeups`] ([`WakeSource`]) once it is durable, so idle workers and dispatchers
//!   claim at once; a write that does not take effect signals nothing.
//!
//! # Implementing
//! Run the conformance suite of the `crm-testkit` crate against your backend; it is the
//! executable form of these contracts.

mod anomaly;
mod api_keys;
mod approval;
mod clock_skew;
mod compliance;
mod coordination;
mod crm;
mod enrichment;
mod ext;
mod intake;
mod outbox;
mod ports;
mod query;
mod queue;
mod scoring;
mod send_gate;
mod sequences;
mod touches;
mod wake;
mod webhook;
mod workspace;

pub use anomaly::AnomalyStore;
pub use api_keys::ApiKeyStore;
pub use approval::{ApprovalDecided, ApprovalStore};
pub use clock_skew::{MAX_CLOCK_SKEW, takeover_cutoff};
pub use compliance::{AuditStore, ComplianceStore};
pub use coordination::{LeaseStore, QuotaStore};
pub use crm::{AccountStore, ActivityFilter, ActivityStore, ContactStore, DealStore};
pub use enrichment::{
    CachedEnrichment, EnrichmentDataType, EnrichmentStore, EnrichmentUsage, ReserveOutcome,
    SpendReservation, SpendReservationId, SpendTotals, month_of, validate_month,
    validate_settlement,
};
pub use ext::{AnswerCountMismatch, ApprovalStoreExt, ComplianceStoreExt, EventStoreExt};
pub use intake::{ContactWrite, IntakeCompletion, IntakeStore, MAX_INTAKE_BATCH};
pub use outbox::{ApprovalHold, OutboxStore, Reschedule, SentMark, SentRecord};
pub use ports::{
    AnomalyScannerStore, ApprovalInboxStore, BackendName, DispatcherStore, EnricherStore,
    EnrollerStore, ForecastStore, GraduatedRulesStore, InboundHandlerStore, IntakeServiceStore,
    RunnerStore, ScorerStore,
};
pub use query::{Claim, Inserted, Page, QuotaDecision, QuotaKey, Scope, validate_limit};
pub use queue::{EventStore, JobStore};
pub use scoring::{ScoreEvents, ScoringStore};
pub use send_gate::{SendStart, SendStartOutcome, StoppedSends, TouchLimit, WithStopped};
pub use sequences::{EnrollmentAdvanced, EnrollmentChange, EnrollmentFilter, SequenceStore};
pub use touches::{ContactDay, TouchStore, validate_day_count};
pub use wake::{
    MAX_WAKE_TIMER, WakeFeed, WakeSource, WakeSubscription, WakeTopic, Wakeups, WeakWakeups, Woke,
};
pub use webhook::{
    DeliveryClaim, InboundPipelineStore, MAX_PROVIDER_NAME_BYTES, WebhookStore,
    validate_webhook_delivery, webhook_lease_expiry,
};
pub use workspace::WorkspaceStore;

/// Every repository in one object: what a host holds as `Arc<DynStore>`.
///
/// Implemented automatically for any type implementing all repository traits and
/// [`NamedBackend`]. Its supertraits include every engine's port (see [`DispatcherStore`]
/// and its siblings), so an `Arc<DynStore>` upcasts to any of them.
pub trait Store:
    BackendName
    + ContactStore
    + AccountStore
    + DealStore
    + ActivityStore
    + ComplianceStore
    + AuditStore
    + IntakeStore
    + SequenceStore
    + OutboxStore
    + ApprovalStore
    + EventStore
    + JobStore
    + QuotaStore
    + LeaseStore
    + AnomalyStore
    + EnrichmentStore
    + ScoringStore
    + WebhookStore
    + WorkspaceStore
    + TouchStore
    + ApiKeyStore
    + DispatcherStore
    + RunnerStore
    + EnrollerStore
    + ApprovalInboxStore
    + GraduatedRulesStore
    + AnomalyScannerStore
    + EnricherStore
    + ScorerStore
    + IntakeServiceStore
    + InboundHandlerStore
    + InboundPipelineStore
    + ForecastStore
    + WakeSource
    + Send
    + Sync
    + 'static
{
}

/// Names a backend for [`BackendName::backend_name`]; implement it once per store type.
pub trait NamedBackend {
    /// The backend's name.
    const NAME: &'static str;
}

impl<T> Store for T where
    T: NamedBackend
        + ContactStore
        + AccountStore
        + DealStore
        + ActivityStore
        + ComplianceStore
        + AuditStore
        + IntakeStore
        + SequenceStore
        + OutboxStore
        + ApprovalStore
        + EventStore
        + JobStore
        + QuotaStore
        + LeaseStore
        + AnomalyStore
        + EnrichmentStore
        + ScoringStore
        + WebhookStore
        + WorkspaceStore
        + WakeSource
        + TouchStore
        + ApiKeyStore
        + Send
        + Sync
        + 'static
{
}

/// The dynamically dispatched store a host holds as `Arc<DynStore>`.
pub type DynStore = dyn Store;

// Compile-time guards: these traits must stay dyn-compatible.
#[allow(dead_code)]
fn _assert_dyn_compatible(
    _: &DynStore,
    _: &dyn ContactStore,
    _: &dyn OutboxStore,
    _: &dyn JobStore,
    _: &dyn LeaseStore,
    _: &dyn EnrichmentStore,
    _: &dyn WorkspaceStore,
) {
}
