//! Narrow ports: the repositories each engine uses, named.
//!
//! Every engine takes only the repositories it calls, through one of these traits,
//! held as `Arc<dyn Port>`. Each port is a supertrait of `Store` (in `store`)
//! and has a blanket impl, so a host passes its `Arc<DynStore>` unchanged (trait
//! upcasting) and a test double need implement only the repositories of the engine it
//! drives. An engine that uses a single repository takes that repository's trait
//! directly (for example `Arc<dyn SequenceStore>`, `Arc<dyn JobStore>`).
//!
//! Every port includes [`BackendName`], so an engine can name its backend in logs and
//! in `Debug` output.

use crate::store::{
    AccountStore, ActivityStore, AnomalyStore, ApprovalStore, AuditStore, ComplianceStore,
    ContactStore, EnrichmentStore, EventStore, IntakeStore, JobStore, LeaseStore, OutboxStore,
    QuotaStore, ScoringStore, SequenceStore, TouchStore,
};

/// The name of the backend behind a store or a port (`"memory"`, `"postgres"`), for
/// errors, logs and `Debug` output.
///
/// Implemented for every `NamedBackend` (in `store`).
pub trait BackendName {
    /// The backend's name.
    fn backend_name(&self) -> &'static str;
}

impl<T: crate::store::NamedBackend + ?Sized> BackendName for T {
    fn backend_name(&self) -> &'static str {
        T::NAME
    }
}

/// Declares a port: a trait over the listed repositories with a blanket impl.
macro_rules! port {
    ($(#[$doc:meta])* $name:ident: $first:ident $(+ $repo:ident)*) => {
        $(#[$doc])*
        pub trait $name: BackendName + $first $(+ $repo)* + Send + Sync + 'static {}

        impl<T> $name for T where T: BackendName + $first $(+ $repo)* + Send + Sync + 'static + ?Sized {}

        // Compile-time guard: the port stays dyn-compatible.
        const _: Option<&dyn $name> = None;
    };
}

port! {
    /// What the outbox `Dispatcher` (in `outreach::dispatch`) uses.
    ///
    /// - [`OutboxStore`]: claims pending messages, reaps expired leases, and ends each
    ///   claim (sent with its activity, rescheduled, held for approval, finished).
    /// - [`ApprovalStore`]: reads a message's approval item and stores the item a policy
    ///   decided or a person must decide.
    /// - [`ComplianceStore`]: reads suppressions and consents before every send and
    ///   suppresses an invalid recipient.
    /// - [`QuotaStore`]: consumes the daily per-channel send quota.
    /// - [`AnomalyStore`]: lists open anomalies that pause a channel.
    /// - [`ContactStore`]: reads the contact's time zone to schedule its next step.
    /// - [`SequenceStore`]: checks that the enrollment still wants the message and reads
    ///   its sequence to schedule the next step.
    DispatcherStore: OutboxStore + ApprovalStore + ComplianceStore + QuotaStore + AnomalyStore
        + ContactStore + SequenceStore
}

port! {
    /// What the sequence `Runner` (in `outreach::runner`) uses.
    ///
    /// - [`LeaseStore`]: holds the per-workspace runner lease.
    /// - [`SequenceStore`]: lists due enrollments and advances them a page at a time
    ///   (state and rendered message together), reading the sequence definitions.
    /// - [`ContactStore`], [`AccountStore`]: read the page's contacts and their accounts
    ///   for merge values and send windows.
    /// - [`ActivityStore`]: counts today's touches for the daily touch limit, and finds
    ///   the contact's last inbound message for WhatsApp and Instagram windows.
    /// - [`AuditStore`]: records why an enrollment was parked.
    /// - [`OutboxStore`]: reads a pending step's message, to move its enrollment on
    ///   when the message ended unsent.
    /// - [`TouchStore`]: counts the page's contacts' queued and sent messages of their
    ///   local day for the daily touch limit.
    RunnerStore: LeaseStore + SequenceStore + ContactStore + AccountStore + ActivityStore
        + AuditStore + OutboxStore + TouchStore
}

port! {
    /// What the `Enroller` (in `outreach::enroll`) uses.
    ///
    /// - [`SequenceStore`]: reads the sequence, lists the contact's enrollments for the
    ///   conflict checks, and inserts the enrollment.
    /// - [`ContactStore`]: reads the contact.
    /// - [`ComplianceStore`]: checks suppression and consent before enrolling.
    /// - [`ActivityStore`]: counts today's touches for the daily touch limit.
    EnrollerStore: SequenceStore + ContactStore + ComplianceStore + ActivityStore
}

port! {
    /// What the `ApprovalInbox` (in `outreach::approvals`) uses.
    ///
    /// - [`ApprovalStore`]: reads, lists, decides and expires items.
    /// - [`OutboxStore`]: reads and edits the message an item holds.
    /// - [`AuditStore`]: records every decision.
    ApprovalInboxStore: ApprovalStore + OutboxStore + AuditStore
}

port! {
    /// What the `GraduatedRules` approval policy (in `outreach::approvals`)
    /// uses.
    ///
    /// - [`ApprovalStore`]: lists the workspace's rules, reads a template's clean
    ///   approval streak, and lists pending items for rule previews.
    /// - [`QuotaStore`]: counts and consumes each rule's daily cap.
    GraduatedRulesStore: ApprovalStore + QuotaStore
}

port! {
    /// What the `AnomalyScanner` (in `anomaly`) uses.
    ///
    /// - [`AnomalyStore`]: raises, reads, lists and resolves anomalies.
    /// - [`ActivityStore`]: counts sends and failures for the failure-rate rules.
    /// - [`ApprovalStore`]: lists approval items for the confidence-trend rule.
    /// - [`QuotaStore`]: reads send-quota usage for the quota-exhausted rule.
    AnomalyScannerStore: AnomalyStore + ActivityStore + ApprovalStore + QuotaStore
}

port! {
    /// What the `Enricher` (in `enrichment`) uses.
    ///
    /// - [`EnrichmentStore`]: the lookup cache, usage records and monthly spend.
    /// - [`EventStore`]: appends the budget-threshold events.
    EnricherStore: EnrichmentStore + EventStore
}

port! {
    /// What the `Scorer` (in `scoring`) uses.
    ///
    /// - [`ScoringStore`]: models, scoring inputs and scores (with their tier-change
    ///   events, atomically).
    /// - [`EventStore`]: appends tier-change events, and a new model's event with its
    ///   bulk-rescore job.
    /// - [`AuditStore`]: records manual overrides set and cleared.
    ScorerStore: ScoringStore + EventStore + AuditStore
}

port! {
    /// What the `IntakeService` (in `intake`) uses.
    ///
    /// - [`IntakeStore`]: stores raw rows and completes processed ones (contact write,
    ///   provenance, event and row together).
    /// - [`ContactStore`], [`AccountStore`]: resolve identity (by email, by domain).
    /// - [`JobStore`]: enqueues the processing job of an import.
    IntakeServiceStore: IntakeStore + ContactStore + AccountStore + JobStore
}

port! {
    /// What the `InboundHandler` (in `outreach::inbound`) uses.
    ///
    /// - [`OutboxStore`]: finds the message a provider event is about.
    /// - [`ContactStore`]: finds the contact by address.
    /// - [`SequenceStore`]: pauses or stops the contact's enrollments.
    /// - [`ActivityStore`]: records replies, bounces and other provider events (once:
    ///   it reads recent ones first).
    /// - [`ComplianceStore`]: records unsubscribes as consent and suppression.
    /// - [`AuditStore`]: records enrollments stopped because the account replied.
    InboundHandlerStore: OutboxStore + ContactStore + SequenceStore + ActivityStore
        + ComplianceStore + AuditStore
}

port! {
    /// What the `Forecast` (in `outreach::forecast`) uses; it only reads.
    ///
    /// - [`SequenceStore`]: lists running enrollments and their sequences.
    /// - [`ContactStore`], [`AccountStore`]: read contacts and accounts.
    /// - [`ComplianceStore`]: reads suppressions and consents.
    /// - [`OutboxStore`]: lists queued messages.
    /// - [`QuotaStore`]: reads the quota already used.
    /// - [`ActivityStore`]: counts today's touches.
    ForecastStore: SequenceStore + ContactStore + AccountStore + ComplianceStore
        + OutboxStore + QuotaStore + ActivityStore
}
