//! Outbox dispatcher scenarios: the [`Dispatcher`] against a real store.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics naming the rule
//! it checks. Cases use a [`ManualClock`] starting at [`base`], create their own
//! workspaces, and claim across [`Scope::All`](crm_core::store::Scope::All): give each case
//! a fresh store ([`dispatch_conformance_tests!`](crate::dispatch_conformance_tests)
//! does). Concurrency cases spawn tasks, so they need a multi-thread Tokio runtime.

mod approval_race;
mod fail_closed;
mod failures;
mod gates;
mod panics;
mod send_gate;
mod sending;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::future::join_all;

pub use approval_race::*;
pub use fail_closed::*;
pub use failures::*;
pub use gates::*;
pub use panics::*;
pub use send_gate::*;
pub use sending::*;

use crate::store::fixtures::{base, created, new_contact, new_message, ok, unique_email};
use crm_core::approval::{
    ApprovalDecision, ApprovalPolicy, ApprovalRequest, Notifier, PolicyError,
};
use crm_core::channel::ChannelError;
use crm_core::clock::ManualClock;
use crm_core::ids::{ApprovalRuleId, OutboxMessageId, WorkspaceId};
use crm_core::model::{ApprovalItem, Channel, Contact, OutboxMessage, OutboxStatus};
use crm_core::outreach::dispatch::{
    ChannelRegistry, DispatchReport, Dispatcher, DispatcherConfig, StubChannel,
};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::{DynStore, Page};

/// Expands to one `#[tokio::test]` (multi-thread, 4 workers) per dispatcher scenario.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once per
/// test; it should return a fresh store. Each case gets it as `Arc<DynStore>`.
///
/// ```ignore
/// async fn fresh_store() -> my_store::MyStore { my_store::MyStore::for_tests().await }
/// crm_testkit::dispatch_conformance_tests!(fresh_store);
/// ```
#[macro_export]
macro_rules! dispatch_conformance_tests {
    ($make:path) => {
        $crate::__dispatch_cases!($crate::__dispatch_conformance_expand, $make);
    };
}

/// Expands the case list into tests; called back by [`__dispatch_cases!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch_conformance_expand {
    ($make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 4,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let store: ::std::sync::Arc<$crate::__core::DynStore> = ::std::sync::Arc::new($make().await);
                $crate::engine::dispatch::$case(store).await;
            }
        )*
    };
}

/// The one list of dispatcher scenarios. Calls `$callback!($($args)*; case ...)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch_cases {
    ($callback:path, $($args:tt)*) => {
        $callback! { $($args)*;
            // sending
            dispatch_sends_once_and_records_the_activity
            dispatch_concurrent_dispatchers_hand_each_message_over_once
            dispatch_quota_is_never_exceeded_and_overflow_waits_a_day
            dispatch_dry_run_by_config_sends_nothing_for_real
            dispatch_allowlist_is_enforced_in_dry_run
            dispatch_stopped_mid_batch_sends_nothing_twice
            dispatch_run_stops_on_shutdown
            // the send gate
            dispatch_unsubscribe_mid_batch_stops_the_later_send
            dispatch_random_unsubscribes_never_race_a_send
            dispatch_crash_after_taking_quota_leaks_no_unit
            // gates before the send
            dispatch_suppression_after_enqueue_blocks_the_send
            dispatch_withdrawn_consent_after_enqueue_blocks_the_send
            dispatch_manual_approval_holds_then_sends_the_edited_text
            dispatch_approver_acting_instantly_never_finds_the_message_busy
            dispatch_policy_rejection_cancels
            dispatch_never_asks_approval_for_a_suppressed_address
            dispatch_cancels_messages_of_stopped_enrollments
            dispatch_advances_the_enrollment_with_the_send
            dispatch_paused_channel_postpones
            dispatch_outside_the_step_window_waits_for_it
            dispatch_fails_messages_without_a_contact
            // provider failures
            dispatch_retryable_errors_back_off_then_dead_letter
            dispatch_rate_limited_honours_retry_after
            dispatch_permanent_errors_fail
            dispatch_invalid_recipient_fails_and_suppresses
            // a panicking adapter
            dispatch_panicking_adapter_fails_the_message_once
            dispatch_panic_is_caught_per_message
            // settings that cannot be read: fail closed
            dispatch_unreadable_settings_hold_the_workspace_until_they_read
            dispatch_store_settings_send_nothing_for_an_unknown_workspace
        }
    };
}

/// A policy that approves every send by one rule, for scenarios about what follows
/// approval.
#[derive(Debug, Clone, Copy)]
pub struct ApproveAll {
    /// The rule named as the decider.
    pub rule: ApprovalRuleId,
}

#[async_trait]
impl ApprovalPolicy for ApproveAll {
    async fn decide(&self, _request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(ApprovalDecision::AutoApprove { rule: self.rule })
    }
}

/// A policy that rejects every send with the reason "off-brand".
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectAll;

#[async_trait]
impl ApprovalPolicy for RejectAll {
    async fn decide(&self, _request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(ApprovalDecision::Reject {
            reason: "off-brand".into(),
        })
    }
}

/// A notifier that records the items it was told about.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    items: Mutex<Vec<ApprovalItem>>,
}

impl RecordingNotifier {
    /// The items announced so far.
    pub fn items(&self) -> Vec<ApprovalItem> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn approval_needed(&self, item: &ApprovalItem) -> Result<(), ChannelError> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item.clone());
        Ok(())
    }
}

/// A store, a manual clock at [`base`], one workspace, and an email [`StubChannel`]
/// that delivers everything.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The store under test.
    pub store: Arc<DynStore>,
    /// The clock every dispatcher of the harness uses.
    pub clock: ManualClock,
    /// The case's workspace.
    pub ws: WorkspaceId,
    /// The default email adapter.
    pub stub: StubChannel,
    /// The rule [`ApproveAll`] names.
    pub rule: ApprovalRuleId,
}

impl Harness {
    /// A harness over `store`.
    pub fn new(store: Arc<DynStore>) -> Self {
        let clock = ManualClock::new(base());
        let stub = StubChannel::ok(Channel::Email).with_clock(Arc::new(clock.clone()));
        Self {
            store,
            clock,
            ws: WorkspaceId::new(),
            stub,
            rule: ApprovalRuleId::new(),
        }
    }

    /// A dispatcher sending email through `adapter`, with `settings` for the workspace,
    /// the [`ApproveAll`] policy and `config` (the environment is never consulted).
    pub fn dispatcher_with(
        &self,
        adapter: &StubChannel,
        settings: WorkspaceSettings,
        config: DispatcherConfig,
    ) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            Arc::new(StaticSettings::new(settings)),
            ChannelRegistry::new().with(Arc::new(adapter.clone())),
            config.with_env_dry_run(false),
        )
        .with_policy(Arc::new(ApproveAll { rule: self.rule }))
    }

    /// A dispatcher over the harness's stub with default settings and configuration.
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher_with(&self.stub, WorkspaceSettings::default(), config())
    }

    /// Inserts a contact with a unique email; returns it and the email.
    pub async fn contact(&self) -> (Contact, String) {
        let email = unique_email();
        let contact = ok(
            self.store
                .insert_contact(&new_contact(self.ws, &email))
                .await,
            "insert a contact",
        );
        (contact, email)
    }

    /// A pending email message to `contact` at `email`, due at the clock's time.
    pub fn message_to(&self, contact: &Contact, email: &str) -> OutboxMessage {
        let mut message = new_message(self.ws)
            .with_contact(contact.id)
            .with_not_before(self.clock_now());
        message.recipient = email.to_owned();
        message
    }

    /// Enqueues a message to a fresh contact; returns the stored message.
    pub async fn enqueue(&self) -> OutboxMessage {
        let (contact, email) = self.contact().await;
        self.enqueue_message(&self.message_to(&contact, &email))
            .await
    }

    /// Enqueues `message`, which must be new.
    pub async fn enqueue_message(&self, message: &OutboxMessage) -> OutboxMessage {
        created(self.store.enqueue_outbox(message).await, "enqueue_outbox")
    }

    /// The message as stored.
    pub async fn get(&self, id: OutboxMessageId) -> OutboxMessage {
        ok(self.store.get_outbox(self.ws, id).await, "get_outbox")
    }

    /// Every message of the workspace with `status`.
    pub async fn with_status(&self, status: OutboxStatus) -> Vec<OutboxMessage> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = Page {
                after,
                limit: Page::<OutboxMessageId>::MAX_LIMIT,
            };
            let rows = ok(
                self.store.list_outbox(self.ws, Some(status), page).await,
                "list_outbox",
            );
            let Some(last) = rows.last() else { break };
            after = Some(last.id);
            all.extend(rows);
        }
        all
    }

    pub(crate) fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use crm_core::clock::Clock;
        self.clock.now()
    }
}

/// The scenarios' configuration: the default with a named worker and no environment.
pub fn config() -> DispatcherConfig {
    DispatcherConfig::default()
        .with_worker("conformance-dispatcher")
        .with_env_dry_run(false)
}

/// Runs `dispatcher` until a claim finds nothing; returns the summed report.
pub async fn drain(dispatcher: &Dispatcher) -> DispatchReport {
    let mut total = DispatchReport::default();
    loop {
        let report = dispatcher
            .dispatch_batch()
            .await
            .unwrap_or_else(|e| panic!("dispatch_batch failed: {e:?}"));
        total.merge(&report);
        if report.claimed == 0 {
            return total;
        }
    }
}

/// Runs `dispatcher` once and returns its report.
pub async fn once(dispatcher: &Dispatcher) -> DispatchReport {
    dispatcher
        .dispatch_batch()
        .await
        .unwrap_or_else(|e| panic!("dispatch_batch failed: {e:?}"))
}

/// Enqueues `count` messages to `contacts` (round robin) concurrently, in chunks.
pub async fn enqueue_many(h: &Harness, contacts: &[(Contact, String)], count: usize) {
    const CHUNK: usize = 500;
    let mut start = 0;
    while start < count {
        let end = (start + CHUNK).min(count);
        join_all((start..end).map(|i| {
            let (contact, _) = &contacts[i % contacts.len()];
            let message = h.message_to(contact, &unique_email());
            async move { h.enqueue_message(&message).await }
        }))
        .await;
        start = end;
    }
}
