//! The sequence runner: moves due enrollments along their sequences.
//!
//! [`Runner::tick`] asks the store which workspaces have due enrollments, then works on
//! up to [`RunnerConfig::parallelism`] of them at once. For each workspace it first
//! takes the named lease [`RUNNER_LEASE`]: a runner in another process holding it makes
//! this one skip the workspace for this tick. Under the lease it lists the due
//! enrollments and, for each, applies the pure state machine
//! ([`transition`](crate::outreach::enrollment::transition)):
//!
//! | enrollment | the runner |
//! |---|---|
//! | any, sequence archived | `Stop` (reason `sequence_archived`) |
//! | not `StepPending`, sequence paused | held: `next_run_at` cleared until the sequence resumes |
//! | `Pending` | `Start`, first step due after its delay, inside its window |
//! | `Paused` with a due resume time | `Resume` now |
//! | `StepPending`, its message ended unsent | `StepSkipped` or `StepFailed`, by the sequence's [`StepFailurePolicy`](crate::model::StepFailurePolicy) |
//! | `StepPending`, its message sent | `StepSent` (the dispatcher's write lost a race) |
//! | `StepPending`, its message still queued | looked at again after [`RunnerConfig::step_recheck`] |
//! | `StepSent`/`Active` after the last step | `Exhausted` (ends as `Completed`) |
//! | `Active`/`StepSent`, outside the step's send window | `Postpone` to the next opening |
//! | the same, contact at its daily touch limit | `Postpone` to the next local day's opening |
//! | the same, otherwise | renders the step and `StepDue`: one outbox message |
//!
//! After `Start` or `Resume` the same enrollment is looked at again in the same tick, so
//! a step due at once is queued at once.
//!
//! # A step that cannot be sent
//! A queued step's message may end without being sent: its approval rejected or
//! expired, cancelled, failed, dead-lettered. The enrollment records the message it
//! queued (`step_message_id`) and is due again [`RunnerConfig::step_recheck`] after
//! queueing (and at once when the store wakes it as the message ends); the runner then
//! reads the message and moves the enrollment on, so no enrollment waits in
//! `StepPending` for ever.
//!
//! # Pages
//! A workspace pass works on its due enrollments as one page: the contacts in one
//! [`ContactStore::get_contacts`](crate::store::ContactStore::get_contacts) call, their
//! touches of the day in one
//! [`TouchStore::count_day_touches`](crate::store::TouchStore::count_day_touches) call;
//! then each enrollment is worked out in due order as above (touches queued for an
//! earlier enrollment count for a later one of the same contact), and every change of
//! the page is written with one
//! [`SequenceStore::advance_enrollments`](crate::store::SequenceStore::advance_enrollments)
//! call. When an enrollment cancels queued messages of a contact that has later
//! enrollments in the page, the changes so far are written first and that contact's
//! touches read again, so the later ones count what the store has.
//!
//! # Writes and crash safety
//! Every change is one change-set, applied as by
//! [`SequenceStore::advance_enrollment`](crate::store::SequenceStore::advance_enrollment),
//! compare-and-set on the version read: the new state and the rendered message are stored together or
//! not at all. An enrollment looked at again in the same pass (after `Start`, `Resume` or
//! a skipped step) chains its next change on the version the first one stores; when the
//! first is refused, the next is too. The message's idempotency key is
//! [`step_idempotency_key`](crate::outreach::enrollment::step_idempotency_key) of the
//! enrollment as read, so a runner that crashes and re-reads the same row produces the
//! same key and the store returns the message already queued instead of a second one.
//! A version conflict means another actor (a reply, another runner) moved the
//! enrollment first; the runner leaves it.
//!
//! # A step that cannot be rendered
//! A missing merge field is never sent as a blank. The state machine has no event
//! "rendering failed" outside `StepPending`, so the runner parks the enrollment: `Pause`
//! with no resume time (nothing is lost; a person fixes the contact and resumes it),
//! plus an audit entry (`outreach.render_failed`, with the step and the field name,
//! never the text). A step on a channel the contact has no address for is parked the
//! same way (`outreach.no_address`), and so is an enrollment whose step no longer exists
//! after a migration (`outreach.step_missing`).
//!
//! # Messages
//! A queued message carries the rendered subject and body, the contact's address for
//! the channel (`contact:<id>` for a manual task), `not_before` = now, and metadata
//! `{"requires_approval", "template_key": "<sequence>:<version>:<step>", "sequence_id",
//! "sequence_version", "context": {"sequence", "step", "steps", "channel"}}` (the
//! context is shown to an approver; it holds no contact data), plus what the channel's
//! adapter reads: for WhatsApp `content_sid` and the rendered `content_variables` of the
//! step's template, for WhatsApp and Instagram `last_inbound_at` (the contact's latest
//! `ReplyReceived` activity on the channel, RFC 3339), for Cal.com `booking_url` (the
//! step's booking link). Adapters stay independent of the store. `extra.*` merge
//! values come from the host's [`MergeValues`] ([`Runner::with_merge_values`]). It is `Pending`; the dispatcher's approval policy, consent,
//! suppression and quota checks decide when it really goes out.
//!
//! # Limits
//! The touch limit counts the contact's messages of its local day: those sent that day
//! (`MessageSent` activities since the local midnight) and those still queued to go by
//! the day's end (pending, awaiting approval, in flight; manual tasks aside:
//! [`TouchStore::count_day_touches`](crate::store::TouchStore::count_day_touches)),
//! plus the steps the pass queued to the contact before, so parallel sequences cannot
//! queue past the limit before any of them is sent. A step whose write is then refused
//! (a race) was still counted: the count errs on the safe side. At the
//! limit the step is postponed to the window's first opening in the contact's next
//! local day. Channel quotas are the dispatcher's.
//!
//! # A delay that cannot be scheduled
//! Delays are bounded when a sequence is saved ([`StepDelay::MAX_HOURS`](crate::model::StepDelay::MAX_HOURS),
//! [`StepDelay::MAX_BUSINESS_DAYS`](crate::model::StepDelay::MAX_BUSINESS_DAYS)). A stored
//! delay past them (written around validation) cannot be scheduled: that one
//! enrollment is parked (`delay_out_of_range`, with an audit entry naming the step) and
//! listed in [`TenantReport::failed`] as [`RunnerError::Delay`]; the tick goes on. A workspace pass handles at most
//! [`RunnerConfig::batch_size`] enrollments and must finish within
//! [`RunnerConfig::lease_ttl`]; an overrun is still safe (every write is
//! compare-and-set) but another runner may then work on the workspace too.

mod channel_meta;
mod pass;
mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{StoreError, ValidationError};
use crate::ids::{EnrollmentId, WorkspaceId};
use crate::outreach::enrollment::TransitionError;
use crate::outreach::schedule::DelayOutOfRange;
use crate::outreach::settings::{SettingsError, SettingsProvider};
use crate::store::RunnerStore;

pub use channel_meta::{BOOKING_LINK_PARAM, step_booking_link, workspace_booking_link};
pub(crate) use support::{Definitions, contact_time_zone, extra_values, step_count, touches_today};
pub use support::{MergeValues, StaticMergeValues, contact_address};

/// The name of the per-workspace lease a runner holds while working on a workspace.
pub const RUNNER_LEASE: &str = "outreach.runner";

/// How a [`Runner`] works.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunnerConfig {
    /// This runner's name as lease holder. Must be unique per runner instance: two
    /// runners with the same name share leases. The default is random.
    pub holder: String,
    /// How many workspaces are worked on at once (default 4).
    pub parallelism: usize,
    /// How long a workspace lease lasts (default 5 minutes); a pass must finish sooner.
    pub lease_ttl: Duration,
    /// At most this many due enrollments per workspace and tick (default 200, at most
    /// 1000).
    pub batch_size: u32,
    /// At most this many workspaces per tick (default 1000, at most 1000).
    pub max_workspaces: u32,
    /// Whether the daily touch limit postpones steps (default on).
    pub enforce_touch_limit: bool,
    /// How long after queueing a step the runner looks at its message again, in case
    /// nothing else wakes the enrollment when the message ends (default 1 hour).
    pub step_recheck: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            holder: format!("outreach-runner-{}", uuid::Uuid::now_v7().simple()),
            parallelism: 4,
            lease_ttl: Duration::minutes(5),
            batch_size: 200,
            max_workspaces: 1000,
            enforce_touch_limit: true,
            step_recheck: Duration::hours(1),
        }
    }
}

impl RunnerConfig {
    /// Sets the holder name.
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Sets how many workspaces are worked on at once.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets the lease length.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the per-workspace batch size.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets the most workspaces per tick.
    #[must_use]
    pub fn with_max_workspaces(mut self, max: u32) -> Self {
        self.max_workspaces = max;
        self
    }

    /// Turns the touch limit on or off.
    #[must_use]
    pub fn with_touch_limit(mut self, on: bool) -> Self {
        self.enforce_touch_limit = on;
        self
    }

    /// Sets how long after queueing a step its message is looked at again.
    #[must_use]
    pub fn with_step_recheck(mut self, recheck: Duration) -> Self {
        self.step_recheck = recheck;
        self
    }

    /// A holder name, parallelism at least 1, a positive lease and recheck, limits of 1
    /// to 1000.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.holder.trim().is_empty() {
            return Err(ValidationError::new("runner.holder", "must not be empty"));
        }
        if self.parallelism == 0 {
            return Err(ValidationError::new(
                "runner.parallelism",
                "must be at least 1",
            ));
        }
        if self.lease_ttl <= Duration::zero() {
            return Err(ValidationError::new("runner.lease_ttl", "must be positive"));
        }
        if self.step_recheck <= Duration::zero() {
            return Err(ValidationError::new(
                "runner.step_recheck",
                "must be positive",
            ));
        }
        crate::store::validate_limit(self.batch_size)?;
        crate::store::validate_limit(self.max_workspaces)
    }
}

/// Why the runner failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The store failed.
    #[error("outreach runner store call failed")]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error("invalid runner configuration")]
    Config(#[source] ValidationError),
    /// A due enrollment was in a state no runner event fits (a store returned a row
    /// that is not due).
    #[error("enrollment does not accept the runner's event")]
    Transition(#[from] TransitionError),
    /// The workspace's settings could not be read: the workspace is skipped for this
    /// tick (nothing is queued without its limits and safety settings).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A step's stored delay cannot be scheduled (it is past its maximum: written
    /// around [`Sequence::validate`](crate::model::Sequence::validate)). The enrollment
    /// is parked with reason `delay_out_of_range`; the others go on.
    #[error("the delay of step {step} cannot be scheduled")]
    Delay {
        /// The step whose delay failed (0-based).
        step: i32,
        /// Why.
        #[source]
        source: DelayOutOfRange,
    },
}

impl RunnerError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Settings(e) => e.is_retryable(),
            Self::Config(_) | Self::Transition(_) | Self::Delay { .. } => false,
        }
    }
}

/// One enrollment the runner could not handle; the others went on.
#[derive(Debug)]
pub struct EnrollmentFailure {
    /// The enrollment.
    pub enrollment_id: EnrollmentId,
    /// Why.
    pub error: RunnerError,
}

/// What one pass over a workspace did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TenantReport {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Due enrollments listed.
    pub due: usize,
    /// Pending enrollments started.
    pub started: usize,
    /// Paused enrollments resumed.
    pub resumed: usize,
    /// Messages newly queued.
    pub enqueued: usize,
    /// Steps whose message already existed under the same key (a re-run after a
    /// crash): the existing message was kept, no duplicate was made.
    pub reused: usize,
    /// Steps postponed (send window or touch limit).
    pub postponed: usize,
    /// Enrollments that completed every step (ended as `Completed`).
    pub exhausted: usize,
    /// Enrollments paused because a step could not be built (see the module docs).
    pub parked: usize,
    /// Steps skipped because their message ended unsent.
    pub skipped: usize,
    /// Enrollments failed because their step's message ended unsent.
    pub step_failed: usize,
    /// Enrollments stopped because their sequence is archived.
    pub stopped: usize,
    /// Enrollments held (sequence paused) or whose queued message is still on its way.
    pub held: usize,
    /// Enrollments moved on whose step's message was sent but not recorded on them.
    pub rechecked: usize,
    /// Enrollments another actor changed first (left alone).
    pub superseded: usize,
    /// Enrollments that failed; the pass went on with the others.
    pub failed: Vec<EnrollmentFailure>,
}

/// A workspace whose pass failed as a whole (its lease or its listing).
#[derive(Debug)]
pub struct TenantFailure {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Why.
    pub error: RunnerError,
}

/// What one tick did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TickReport {
    /// Workspaces worked on.
    pub tenants: Vec<TenantReport>,
    /// Workspaces skipped because another runner holds their lease.
    pub skipped: Vec<WorkspaceId>,
    /// Workspaces whose pass failed.
    pub failed: Vec<TenantFailure>,
}

impl TickReport {
    /// Messages newly queued across workspaces.
    #[must_use]
    pub fn enqueued(&self) -> usize {
        self.tenants.iter().map(|t| t.enqueued).sum()
    }

    /// The report of `workspace_id`, if it was worked on.
    #[must_use]
    pub fn tenant(&self, workspace_id: WorkspaceId) -> Option<&TenantReport> {
        self.tenants.iter().find(|t| t.workspace_id == workspace_id)
    }
}

/// The sequence runner. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Runner {
    store: Arc<dyn RunnerStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
    config: RunnerConfig,
    merge_values: Option<Arc<dyn MergeValues>>,
}

impl Runner {
    /// A runner over `store`, timed by `clock`, with the workspaces' `settings`.
    pub fn new(
        store: Arc<dyn RunnerStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
        config: RunnerConfig,
    ) -> Result<Self, RunnerError> {
        config.validate().map_err(RunnerError::Config)?;
        Ok(Self {
            store,
            clock,
            settings,
            config,
            merge_values: None,
        })
    }

    /// Supplies `extra.*` merge values (without it, a template using one parks the
    /// enrollment as a missing field).
    #[must_use]
    pub fn with_merge_values(mut self, values: Arc<dyn MergeValues>) -> Self {
        self.merge_values = Some(values);
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Works on every workspace with due enrollments at the clock's now, up to
    /// `parallelism` at once.
    ///
    /// Fails only if the workspaces cannot be listed; a workspace or an enrollment that
    /// fails is reported in the [`TickReport`] and the others go on.
    pub async fn tick(&self) -> Result<TickReport, RunnerError> {
        let span = tracing::info_span!(
            "outreach.runner.tick",
            workspaces = tracing::field::Empty,
            enqueued = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        let report = self.tick_inner().instrument(span.clone()).await?;
        span.record("workspaces", report.tenants.len());
        span.record("enqueued", report.enqueued());
        span.record("failed", report.failed.len());
        Ok(report)
    }

    async fn tick_inner(&self) -> Result<TickReport, RunnerError> {
        let now = self.clock.now();
        let workspaces = self
            .store
            .list_workspaces_with_due_enrollments(now, self.config.max_workspaces)
            .await?;
        let outcomes: Vec<_> = futures::stream::iter(workspaces)
            .map(|ws| async move { (ws, self.run_workspace_at(ws, now).await) })
            .buffer_unordered(self.config.parallelism.max(1))
            .collect()
            .await;
        let mut report = TickReport::default();
        for (workspace_id, outcome) in outcomes {
            match outcome {
                Ok(Some(tenant)) => report.tenants.push(tenant),
                Ok(None) => report.skipped.push(workspace_id),
                Err(error) => {
                    tracing::warn!(%workspace_id, error = %error, "outreach runner: workspace pass failed");
                    report.failed.push(TenantFailure {
                        workspace_id,
                        error,
                    });
                }
            }
        }
        Ok(report)
    }

    /// One pass over one workspace under its lease at the clock's now; `None` when
    /// another runner holds the lease. The lease is released when the pass ends.
    pub async fn run_workspace(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<TenantReport>, RunnerError> {
        self.run_workspace_at(workspace_id, self.clock.now()).await
    }

    /// [`Runner::run_workspace`] at `now`, the instant of the whole tick.
    async fn run_workspace_at(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantReport>, RunnerError> {
        let Some(grant) = self
            .store
            .try_acquire_lease(
                workspace_id,
                RUNNER_LEASE,
                &self.config.holder,
                self.config.lease_ttl,
                now,
            )
            .await?
        else {
            tracing::debug!(%workspace_id, "outreach runner: lease held elsewhere, skipping");
            return Ok(None);
        };
        let span = tracing::info_span!(
            "outreach.runner.workspace",
            %workspace_id,
            due = tracing::field::Empty,
            enqueued = tracing::field::Empty,
            skipped = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        let result = self.pass(workspace_id, now).instrument(span.clone()).await;
        if let Ok(report) = &result {
            span.record("due", report.due);
            span.record("enqueued", report.enqueued);
            span.record("skipped", report.skipped);
            span.record("failed", report.failed.len());
        }
        if let Err(error) = self.store.release_lease(&grant).await {
            tracing::warn!(%workspace_id, error = %error, "outreach runner: lease release failed; it expires on its own");
        }
        result.map(Some)
    }

    async fn pass(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<TenantReport, RunnerError> {
        let settings = self.settings.settings(workspace_id).await?;
        let due = self
            .store
            .list_due_enrollments(workspace_id, now, self.config.batch_size)
            .await?;
        let pass = pass::Pass::new(
            &*self.store,
            &self.config,
            self.merge_values.as_ref(),
            settings,
            workspace_id,
            now,
        );
        pass.run(due).await
    }
}
