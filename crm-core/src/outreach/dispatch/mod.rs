//! The outbox dispatcher: the single path every outbound message takes.
//!
//! One [`Dispatcher::dispatch_batch`] claims up to a batch of due messages across all
//! workspaces under a lease and takes each one through:
//!
//! 1. **Pre-checks.** A message without a contact fails (every send records a
//!    timeline activity about its contact, atomically with the status). A message
//!    claimed more often than the attempt budget (its leases kept expiring) is
//!    dead-lettered. A message of an enrollment that is no longer `StepPending` at
//!    its step is cancelled ("enrollment is replied").
//! 2. **Consent and suppression, early.** A suppression of the address, or withdrawn
//!    consent of the contact for the channel, read once for the batch, cancels the
//!    message here already, before the approval, so nobody is asked to approve a send
//!    to an address that opted out. This is only an early filter: the authoritative
//!    check is the send gate of stage 6.
//! 3. **Approval.** An existing approval item decides: approved sends its
//!    [`body_to_send`](crate::model::ApprovalItem::body_to_send), pending holds the
//!    message, rejected or expired cancels it. Without an item the
//!    [`ApprovalPolicy`] is asked (metadata keys [`META_REQUIRES_APPROVAL`],
//!    [`META_CONFIDENCE`], [`META_TEMPLATE_KEY`], [`META_CONTEXT`]): auto-approval
//!    stores an approved item naming the rule (the audit trail) and sends; "a human
//!    decides" stores a pending item, holds the message and tells the [`Notifier`];
//!    rejection cancels.
//! 4. **Allowlist** (dry-run too): a recipient not on the workspace's allowlist
//!    cancels the message.
//! 5. **Channel pause.** An open error-severity anomaly of the channel raised by one of
//!    the [`SEND_HEALTH_RULES`](crate::anomaly::SEND_HEALTH_RULES) postpones the
//!    message by the pause delay, when
//!    the workspace enables `pause_channel_on_error_anomaly`. A sequence step's
//!    message outside its step's send window in the contact's zone (a late approval,
//!    a retry, a restart) is postponed to the window's next opening, its attempt given
//!    back.
//! 6. **The send gate**, [`begin_sends`](crate::store::OutboxStore::begin_sends): one
//!    store call per wave of up to `concurrency` cleared messages, right before their
//!    sends, checks and marks them in one atomic step: still in flight under the lease;
//!    no suppression and no withdrawn consent (the store cancels the message); the
//!    contact's daily touch limit for a sequence step (`daily_touch_limit`, messages
//!    marked sending or sent within the contact's local day; manual tasks and
//!    messages without an enrollment are not held to it); and a unit of the
//!    workspace's daily cap for the channel (`send:<channel>`, per local day of the
//!    workspace's default time zone), held by the message: a re-claimed message reuses
//!    its unit. A message over the cap is postponed, its attempt given back, to the
//!    first instant on or after the start of the workspace's next local day that lies
//!    in its step's send window in the contact's zone; one over the touch limit to the
//!    same from the start of the contact's next local day (a message without an
//!    enrollment: the workspace's zone, no window). Once an unsubscribe
//!    (`add_suppression`, a withdrawing `record_consent`) returns, no send to the
//!    address or contact starts unless it was marked sending before, and the call
//!    reports those.
//! 7. **Send** through the adapter the [`ChannelResolver`] gives for the message's
//!    workspace and channel (built from the workspace's channel configuration; one
//!    that cannot be resolved is a retryable configuration error, found before the
//!    quota is taken), or the [`DryRunChannel`] when dry-run is
//!    forced by the configuration, by `CRM_DRY_RUN=1` (read once at construction) or
//!    by the workspace settings. The outbox id is the idempotency key. Success marks
//!    the message sent, records a `MessageSent` activity and moves the enrollment to
//!    its next step in one atomic store call. Errors are classified by
//!    [`on_channel_error`]: retry with jittered exponential backoff or the provider's
//!    `retry_after` until the attempt budget is spent, then dead letter; permanent and
//!    auth errors fail; an invalid recipient fails and suppresses the address.
//!
//! **Settings first, failing closed.** A workspace whose settings cannot be read
//! (see [`SettingsProvider`]) sends nothing: each of its claimed messages is put back
//! for [`DispatcherConfig::settings_retry_delay`] with its attempt given back (nothing
//! is consumed, cancelled or failed), counted as [`Outcome::SettingsUnavailable`], and
//! the reason is logged once per batch with the workspace id.
//!
//! A store or policy error on one message never fails the batch and never panics: it
//! is logged (ids only) and the message's lease is left to expire, so the message is
//! reaped and claimed again. Quota and pause postponements and approval holds give the
//! claim's attempt back.
//!
//! A batch runs in phases: stages 1 to 5 for every message (up to `concurrency` at
//! once), then waves of up to `concurrency` cleared messages, each through the send
//! gate and then sent together. Waves follow the **cap's fairness order**: earliest
//! `not_before` first, ties by outbox id; when the cap runs out, the messages later in
//! that order wait for the next day (the forecast models exactly this order). Per
//! batch, each workspace's settings (and open anomalies, when needed) are read once
//! and sequence definitions are cached, so the per-message path reads only what it
//! must: the approval item, suppression and consent (together), and for enrollment
//! messages the enrollment (and the contact when its time zone matters).
//!
//! **Quota never leaks.** A unit is taken per message (a grant keyed by the outbox
//! message), not per attempt: a message whose worker died after taking its unit, or
//! that is retried or postponed the same local day, reuses it; a retry on a later day
//! takes that day's unit. A unit is given back when the gate cancels the message or
//! refuses it for the touch limit, when an unsubscribe cancels a message that held
//! one (a retried message waiting in the queue), and when the message fails for good with a
//! [`Configuration`](crate::channel::ChannelErrorKind::Configuration) error, the one
//! kind raised before any request reaches the provider. A send that may have reached
//! the provider keeps its unit, whatever the provider answered.

mod approve;
mod backoff;
mod config;
mod decision;
mod pipeline;
mod prefetch;
mod registry;
mod report;
mod send;
mod stub;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

pub use crate::channel::dry_run::{DryRunChannel, DryRunRecord};
pub use backoff::{backoff_ceiling, backoff_delay, full_jitter, jitter_fraction};
pub use config::{DRY_RUN_ENV, DispatcherConfig, env_forces_dry_run};
pub use decision::{
    FailureAction, RetryPolicy, enrollment_block, next_due, next_due_needs_time_zone,
    on_channel_error, pauses_channel,
};
// Approval metadata lives with the approval code; kept here too, where hosts found it.
pub use crate::outreach::approvals::{
    META_CONFIDENCE, META_CONTEXT, META_REQUIRES_APPROVAL, META_TEMPLATE_KEY, approval_request,
    confidence_of, context_of, template_key_of,
};
pub use registry::ChannelRegistry;
pub use report::{DispatchError, DispatchReport, Outcome};
pub use stub::{StubChannel, StubFailure};

use pipeline::Gated;
use prefetch::{Prefetched, prefetch};

use crate::approval::{ApprovalPolicy, ManualApproval, Notifier};
use crate::channel::ChannelResolver;
use crate::clock::Clock;
use crate::ids::{OutboxMessageId, SequenceId, WorkspaceId};
use crate::model::{Channel, OutboxMessage, Sequence};
use crate::outreach::settings::{SettingsProvider, WorkspaceSettings};
use crate::store::{Claim, DispatcherStore, Page, Reschedule, Scope, WakeTopic, Wakeups};

/// The outbox dispatcher. See the [module docs](self) for the path a message takes.
///
/// Several dispatchers (in one process or many) may run against one store: claims are
/// atomic and leases fenced, so each message is handed to an adapter by one dispatcher
/// at a time. `Dispatcher` is `Send + Sync`; share it in an `Arc` or run several.
pub struct Dispatcher {
    store: Arc<dyn DispatcherStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
    channels: Arc<dyn ChannelResolver>,
    policy: Arc<dyn ApprovalPolicy>,
    notifier: Option<Arc<dyn Notifier>>,
    dry_run: DryRunChannel,
    config: DispatcherConfig,
    forced_dry_run: bool,
    wakeups: Wakeups,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("store", &self.store.backend_name())
            .field("channels", &self.channels)
            .field("policy", &self.policy)
            .field("notifier", &self.notifier.is_some())
            .field("forced_dry_run", &self.forced_dry_run)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher sending through `channels`, the same adapter per channel for every
    /// workspace; see [`Dispatcher::with_resolver`].
    #[must_use]
    pub fn new(
        store: Arc<dyn DispatcherStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
        channels: ChannelRegistry,
        config: DispatcherConfig,
    ) -> Self {
        Self::with_resolver(store, clock, settings, Arc::new(channels), config)
    }

    /// A dispatcher asking `channels` for the adapter of each message's workspace and
    /// channel (with the workspace's channel configuration from its settings), with
    /// the [`ManualApproval`] policy, no notifier and a [`DryRunChannel`] timed by
    /// `clock`. Reads [`DRY_RUN_ENV`] now, once, if the configuration says so.
    #[must_use]
    pub fn with_resolver(
        store: Arc<dyn DispatcherStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
        channels: Arc<dyn ChannelResolver>,
        config: DispatcherConfig,
    ) -> Self {
        let env =
            config.reads_env() && env_forces_dry_run(std::env::var(DRY_RUN_ENV).ok().as_deref());
        let forced_dry_run = config.dry_run() || env;
        if forced_dry_run {
            tracing::info!(by_env = env, "outbox dispatcher runs in dry-run");
        }
        Self {
            dry_run: DryRunChannel::new(Channel::Email).with_clock(clock.clone()),
            store,
            clock,
            settings,
            channels,
            policy: Arc::new(ManualApproval),
            notifier: None,
            config,
            forced_dry_run,
            wakeups: Wakeups::polling(),
        }
    }

    /// Wakes [`run`](Self::run)'s idle sleep through `wakeups` (the store's, see
    /// [`WakeSource`](crate::store::WakeSource)) when a message becomes claimable,
    /// instead of only after the configured idle sleep.
    #[must_use]
    pub fn with_wakeups(mut self, wakeups: Wakeups) -> Self {
        self.wakeups = wakeups;
        self
    }

    /// The wake-up signals [`run`](Self::run) listens to.
    #[must_use]
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Uses `policy` for messages without an approval item.
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<dyn ApprovalPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Tells `notifier` about every approval item the dispatcher creates.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Records dry-run sends in `dry_run` (for example one shared with the host).
    #[must_use]
    pub fn with_dry_run_channel(mut self, dry_run: DryRunChannel) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The adapter that records dry-run sends.
    #[must_use]
    pub fn dry_run_channel(&self) -> &DryRunChannel {
        &self.dry_run
    }

    /// Whether dry-run is forced for every workspace (configuration or environment).
    #[must_use]
    pub fn forces_dry_run(&self) -> bool {
        self.forced_dry_run
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Claims up to `batch_size` due messages across every workspace and processes
    /// them, up to `concurrency` at once. Errors on single messages are counted in the
    /// report, never returned; only a failed claim is an error.
    ///
    /// Runs in an `outbox.dispatch_batch` span (worker, claimed); each message's send
    /// runs in an `outbox.send` span carrying workspace id, outbox id, channel and
    /// attempt, never addresses or content.
    pub async fn dispatch_batch(&self) -> Result<DispatchReport, DispatchError> {
        let span = tracing::info_span!(
            "outbox.dispatch_batch",
            worker = self.config.worker(),
            claimed = tracing::field::Empty,
        );
        self.dispatch_batch_inner().instrument(span).await
    }

    async fn dispatch_batch_inner(&self) -> Result<DispatchReport, DispatchError> {
        let now = self.clock.now();
        let claim = Claim::new(
            Scope::All,
            self.config.worker(),
            now,
            self.config.lease_ttl(),
            self.config.batch_size(),
        );
        let messages = self
            .store
            .claim_outbox(&claim)
            .await
            .map_err(DispatchError::Claim)?;
        let mut report = DispatchReport {
            claimed: u64::try_from(messages.len()).unwrap_or(u64::MAX),
            ..DispatchReport::default()
        };
        tracing::Span::current().record("claimed", report.claimed);
        if messages.is_empty() {
            return Ok(report);
        }
        let batch = self.prepare(&messages).await;
        let batch = &batch;
        let concurrency = self.config.concurrency();
        // Stages 1 and 2 and the approval items, message by message (reads come from
        // the batch's prefetch). Futures are built up front: a stream holding the
        // closures would not be `Send` (their lifetimes are not general enough).
        let screens: Vec<_> = messages
            .iter()
            .map(|message| async move {
                if batch.settings_failed.contains(&message.workspace_id) {
                    Gated::Done(self.hold_for_settings(message, now).await)
                } else {
                    self.screen(batch, message).await
                }
            })
            .collect();
        let mut screened = Vec::with_capacity(messages.len());
        let mut stream = futures::stream::iter(screens).buffer_unordered(concurrency);
        while let Some(gated) = stream.next().await {
            match gated {
                Gated::Done(outcome) => report.record(outcome),
                Gated::Next(s) => screened.push(*s),
            }
        }
        drop(stream);
        // Stage 3 for the whole batch: one policy call, one store call for the items.
        let (approved, outcomes) = self.approve(screened).await;
        for outcome in outcomes {
            report.record(outcome);
        }
        // Stages 4 and 5 and who sends, message by message.
        let clears: Vec<_> = approved
            .into_iter()
            .map(|(s, body)| async move {
                let message = s.attempt.message;
                Gated::of(message, s.clear(body).await)
            })
            .collect();
        let mut ready = Vec::new();
        let mut stream = futures::stream::iter(clears).buffer_unordered(concurrency);
        while let Some(gated) = stream.next().await {
            match gated {
                Gated::Done(outcome) => report.record(outcome),
                Gated::Next(r) => ready.push(*r),
            }
        }
        drop(stream);
        // The cap's fairness order: earliest `not_before` first, ties by id.
        ready.sort_by_key(|r| (r.attempt.message.not_before, r.attempt.message.id));
        let mut rest = ready;
        while !rest.is_empty() {
            // Waves of `concurrency`: each is marked sending right before its sends
            // (one gate call), and its accepted sends are recorded together (one call).
            let tail = rest.split_off(concurrency.min(rest.len()));
            let wave = std::mem::replace(&mut rest, tail);
            let allotted = self.allot(wave, now).await;
            for outcome in allotted.outcomes {
                report.record(outcome);
            }
            for outcome in self.send_wave(allotted.go).await {
                report.record(outcome);
            }
        }
        tracing::debug!(?report, worker = self.config.worker(), "outbox batch done");
        Ok(report)
    }

    /// Returns every expired lease (by the dispatcher's clock) to the queue; returns
    /// how many.
    pub async fn reap_expired_leases(&self) -> Result<u64, DispatchError> {
        self.store
            .reap_outbox_leases(Scope::All, self.clock.now())
            .await
            .map_err(DispatchError::Reap)
    }

    /// Dispatches batches until `shutdown` is `true` (or its sender is dropped). A
    /// batch that claims nothing, or fails, is followed by the idle sleep, which
    /// shutdown interrupts, and (after an empty claim) a wake-up signal too (see
    /// [`with_wakeups`](Self::with_wakeups)). A batch in progress is always finished
    /// before returning. Expired leases are reaped every `reap_interval` of the
    /// dispatcher's clock.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut last_reap: Option<DateTime<Utc>> = None;
        // Subscribed before the first claim, so no message released after a claim
        // that missed it goes unnoticed.
        let mut wake = self.wakeups.subscribe(WakeTopic::Outbox);
        let never = &mut crate::store::WakeSubscription::never();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(interval) = self.config.reap_interval() {
                let now = self.clock.now();
                if last_reap.is_none_or(|at| now - at >= interval) {
                    last_reap = Some(now);
                    match self.reap_expired_leases().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(reaped = n, "expired outbox leases returned"),
                        Err(e) => tracing::warn!(error = %e, "reaping outbox leases failed"),
                    }
                }
            }
            let (idle, failed) = match self.dispatch_batch().await {
                Ok(report) => (report.claimed == 0, false),
                Err(e) => {
                    tracing::warn!(error = %e, retryable = e.is_retryable(), "outbox claim failed");
                    (true, true)
                }
            };
            if idle {
                let sleep = self.config.idle_sleep().to_std().unwrap_or_default();
                let stop = Box::pin(shutdown.changed());
                // A failed claim waits the whole sleep: a signal cannot fix the store.
                let signals = if failed { &mut *never } else { &mut wake };
                let nap = Box::pin(signals.wait(sleep));
                if let futures::future::Either::Left((Err(_), _)) =
                    futures::future::select(stop, nap).await
                {
                    return; // the sender is gone: nobody can ask us to go on
                }
            }
        }
    }

    /// Reads what every message of the batch shares: per workspace its settings and,
    /// when it pauses channels on anomalies, the channels paused now.
    async fn prepare(&self, messages: &[OutboxMessage]) -> Batch {
        let mut ids: Vec<WorkspaceId> = messages.iter().map(|m| m.workspace_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let (loaded, prefetched) = futures::future::join(
            futures::future::join_all(ids.iter().map(|&ws| self.load_workspace(ws))),
            prefetch(&*self.store, messages),
        )
        .await;
        let mut workspaces = HashMap::new();
        let mut settings_failed = HashSet::new();
        for (ws, loaded) in ids.into_iter().zip(loaded) {
            match loaded {
                Loaded::Ready(state) => {
                    workspaces.insert(ws, state);
                }
                Loaded::NoSettings => {
                    settings_failed.insert(ws);
                }
            }
        }
        Batch {
            workspaces,
            settings_failed,
            sequences: Mutex::new(HashMap::new()),
            prefetched,
        }
    }

    async fn load_workspace(&self, workspace_id: WorkspaceId) -> Loaded {
        let settings = match self.settings.settings(workspace_id).await {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(
                    workspace_id = %workspace_id,
                    error = %e,
                    retryable = e.is_retryable(),
                    "workspace settings unreadable; its messages are held back, none sent"
                );
                return Loaded::NoSettings;
            }
        };
        let mut paused = Vec::new();
        if settings.pause_channel_on_error_anomaly {
            match self
                .store
                .list_anomalies(workspace_id, true, Page::first(Page::<()>::MAX_LIMIT))
                .await
            {
                Ok(anomalies) => {
                    paused = Channel::ALL
                        .iter()
                        .copied()
                        .filter(|&c| anomalies.iter().any(|a| pauses_channel(a, c)))
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(
                        workspace_id = %workspace_id,
                        error = %e,
                        "reading anomalies failed; the workspace's messages are left to expire"
                    );
                    return Loaded::Ready(None);
                }
            }
        }
        let dry_run = self.forced_dry_run || settings.dry_run;
        Loaded::Ready(Some(Arc::new(WorkspaceState {
            settings,
            paused,
            dry_run,
        })))
    }

    /// Puts a message of a workspace without readable settings back for the
    /// configured delay, its attempt given back; nothing else is read or written.
    async fn hold_for_settings(&self, message: &OutboxMessage, now: DateTime<Utc>) -> Outcome {
        let Some(token) = message.lease.as_ref().map(|l| l.token) else {
            tracing::warn!(outbox_id = %message.id, "claimed message carries no lease");
            return Outcome::LeftToExpire;
        };
        let reschedule = Reschedule {
            not_before: now + self.config.settings_retry_delay(),
            reason: Some(SETTINGS_UNAVAILABLE.to_owned()),
            count_attempt: false,
        };
        match self
            .store
            .reschedule_outbox(message.workspace_id, message.id, token, &reschedule)
            .await
        {
            Ok(_) => Outcome::SettingsUnavailable,
            Err(e) => {
                tracing::warn!(
                    outbox_id = %message.id,
                    workspace_id = %message.workspace_id,
                    error = %e,
                    "holding a message back failed; its lease is left to expire"
                );
                Outcome::LeftToExpire
            }
        }
    }
}

/// The reason recorded on a message held back because its workspace's settings could
/// not be read.
const SETTINGS_UNAVAILABLE: &str = "workspace settings unavailable";

/// What reading a workspace's shared state gave.
enum Loaded {
    /// The state, or `None` when the anomalies could not be read (messages are left
    /// to expire).
    Ready(Option<Arc<WorkspaceState>>),
    /// The settings could not be read: the workspace's messages are held back.
    NoSettings,
}

/// What the messages of one workspace share within a batch.
#[derive(Debug)]
struct WorkspaceState {
    settings: WorkspaceSettings,
    paused: Vec<Channel>,
    dry_run: bool,
}

/// Per-batch state shared by the messages being processed.
#[derive(Debug)]
struct Batch {
    /// `None`: the workspace's state could not be read.
    workspaces: HashMap<WorkspaceId, Option<Arc<WorkspaceState>>>,
    /// Workspaces whose settings could not be read: nothing of theirs is sent.
    settings_failed: HashSet<WorkspaceId>,
    /// Sequence definitions by (id, version), read at most once per batch.
    sequences: Mutex<HashMap<(SequenceId, i64), Arc<Sequence>>>,
    /// The gates' reads, done for the whole batch; a message missing here reads its own.
    prefetched: HashMap<OutboxMessageId, Prefetched>,
}
