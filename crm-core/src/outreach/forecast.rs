//! The send forecast: what the runner would send for a workspace over the next days,
//! and why anything is held back. Read-only: it changes no state.
//!
//! [`Forecast::forecast`] walks every running enrollment through its remaining steps,
//! in time order across the workspace, with the rule the runner and the dispatcher
//! apply to every message (see [`dispatch`](crate::outreach::dispatch)):
//!
//! - the runner looks at a step when it falls due (after its delay, inside its send
//!   window); outside its window it moves to the next opening ([`HoldReason::Window`]);
//!   at the contact's daily touch limit, counting what was sent to the contact that
//!   local day and what is still queued to go by its end, it moves to the window's first
//!   opening in the contact's next local day ([`HoldReason::TouchLimit`]); manual tasks
//!   do not touch the contact. Otherwise it queues the step's message, due at once;
//! - the dispatcher takes due messages in order of `not_before`, then outbox id
//!   (enqueue order). A message goes when it is inside its step's window in the
//!   contact's zone, the contact was sent fewer than the touch limit that local day,
//!   and the workspace's daily cap of the channel (`send:<channel>` of the workspace's
//!   local day; today's usage is read from the store) is not used up. Over the touch
//!   limit it waits for the window's first opening in the contact's next local day;
//!   over the cap ([`HoldReason::Quota`]) for the window's first opening after the
//!   workspace's next local midnight. So when the cap binds, the earliest due go first,
//!   and a backlog from one day competes with the next day's steps in due order;
//! - after a send, the next step falls due its delay after the send;
//! - a step whose address is suppressed or whose consent is withdrawn is held
//!   ([`HoldReason::Suppression`]), and so is one that cannot be built: no address,
//!   a missing merge field, a step gone after a migration, a delay that cannot be
//!   scheduled ([`HoldReason::Conflict`]);
//! - a message already queued and waiting for a person is held
//!   ([`HoldReason::Approval`]); a planned step that will need a person's approval
//!   says so with `needs_approval` and is assumed approved at once (the step's flag;
//!   the workspace's approval policy decides at dispatch time and may require it for
//!   every step);
//! - a paused enrollment without a resume time is held ([`HoldReason::Paused`]).
//!
//! A planned send lists the reasons it was postponed; a step postponed past the
//! horizon is reported held with the last reason and the time it would be looked at.
//! With [`Forecast::with_tick`] the runner and the dispatcher are assumed to run every
//! tick (as the engine's loops do), and a planned send's `at` is the run that sends it.
//! Messages queued outside any enrollment count toward their contact's touch limit
//! but are not walked (they are not assumed to take the cap).

mod lookups;
mod sim;

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crate::model::{Channel, Contact, SuppressionReason};
use crate::outreach::enroll::all_enrollments;
use crate::outreach::runner::{Definitions, MergeValues};
use crate::outreach::settings::{SettingsError, SettingsProvider};
use crate::store::EnrollmentFilter;
use crate::store::ForecastStore;

use sim::Sim;

/// The longest horizon, in days.
pub const MAX_FORECAST_DAYS: u32 = 366;

/// A bound on simulation steps, so a pathological workspace cannot spin.
const MAX_EVENTS: usize = 500_000;

/// Why a step is postponed or held back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HoldReason {
    /// Outside the step's send window.
    Window,
    /// The channel's daily cap is used up.
    Quota {
        /// The channel.
        channel: Channel,
        /// Its daily cap.
        cap: u32,
    },
    /// The contact reached its daily touch limit.
    TouchLimit {
        /// The limit.
        limit: u32,
    },
    /// Waiting for a person's approval.
    Approval,
    /// The address is suppressed (`Some(reason)`) or consent is withdrawn (`None`).
    Suppression {
        /// Why the address is suppressed.
        reason: Option<SuppressionReason>,
    },
    /// The step cannot be built or would conflict: no address, a missing merge field,
    /// a step that no longer exists.
    Conflict {
        /// What is wrong (field names, never values).
        detail: String,
    },
    /// Paused with no resume time.
    Paused,
}

/// What would happen to one step.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ForecastOutcome {
    /// The runner would queue it at `at`.
    Planned {
        /// When it falls due by its delay (or its queued message's `not_before`).
        due_at: DateTime<Utc>,
        /// When it would be sent (the runner queues it then, or earlier when the
        /// dispatcher postpones it).
        at: DateTime<Utc>,
        /// Whether a person must approve it (the step's flag).
        needs_approval: bool,
        /// Why it goes later than `due_at`, in order.
        postponed_by: Vec<HoldReason>,
    },
    /// It would not go out within the horizon.
    HeldBack {
        /// Why.
        reason: HoldReason,
        /// When it falls due, if known.
        due_at: Option<DateTime<Utc>>,
        /// When it would next be looked at (postponed past the horizon), if known.
        until: Option<DateTime<Utc>>,
    },
}

/// One step of one enrollment in the forecast.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ForecastEntry {
    /// The enrollment.
    pub enrollment_id: EnrollmentId,
    /// Its contact.
    pub contact_id: ContactId,
    /// Its sequence.
    pub sequence_id: SequenceId,
    /// The step index (0-based).
    pub step: i32,
    /// The step's channel.
    pub channel: Channel,
    /// Planned or held back.
    pub outcome: ForecastOutcome,
}

/// Why a forecast failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastError {
    /// The store failed.
    #[error("forecast store call failed")]
    Store(#[from] StoreError),
    /// The workspace's settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl ForecastError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Settings(e) => e.is_retryable(),
        }
    }
}

/// Computes send forecasts.
#[derive(Debug, Clone)]
pub struct Forecast {
    store: Arc<dyn ForecastStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
    enforce_touch_limit: bool,
    merge_values: Option<Arc<dyn MergeValues>>,
    tick: Option<Duration>,
}

impl Forecast {
    /// A forecast over `store`, timed by `clock`, with the workspaces' `settings`,
    /// applying the touch limit as the default runner does.
    #[must_use]
    pub fn new(
        store: Arc<dyn ForecastStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
            enforce_touch_limit: true,
            merge_values: None,
            tick: None,
        }
    }

    /// The `extra.*` merge values the runner uses (see
    /// [`Runner::with_merge_values`](crate::outreach::runner::Runner::with_merge_values)).
    #[must_use]
    pub fn with_merge_values(mut self, values: Arc<dyn MergeValues>) -> Self {
        self.merge_values = Some(values);
        self
    }

    /// How often the runner and the dispatcher run (match the engine's loops): steps
    /// and sends then happen at the forecast's now plus whole ticks, and a forecast is
    /// exact to the instant. Without it (the default) they are assumed to run
    /// continuously: every instant is the moment a step falls due, and a real engine
    /// sends it at its first run after that.
    #[must_use]
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = Some(tick).filter(|t| *t > Duration::zero());
        self
    }

    /// Whether to apply the touch limit (match the runner's configuration).
    #[must_use]
    pub fn with_touch_limit(mut self, on: bool) -> Self {
        self.enforce_touch_limit = on;
        self
    }

    /// What the runner would send in `workspace_id` from the clock's now for `days` days
    /// (at most [`MAX_FORECAST_DAYS`]), in the order it would meet the steps. Writes
    /// nothing.
    pub async fn forecast(
        &self,
        workspace_id: WorkspaceId,
        days: u32,
    ) -> Result<Vec<ForecastEntry>, ForecastError> {
        let now = self.clock.now();
        let settings = self.settings.settings(workspace_id).await?;
        let horizon = now + Duration::days(i64::from(days.min(MAX_FORECAST_DAYS)));
        let mut sim = Sim {
            store: &*self.store,
            settings,
            workspace_id,
            now,
            horizon,
            tick: self.tick,
            touch_limit: self.enforce_touch_limit,
            merge_values: self.merge_values.as_ref(),
            quota_used: HashMap::new(),
            sent: HashMap::new(),
            queued: HashMap::new(),
            compliance: HashMap::new(),
            accounts: HashMap::new(),
            entries: Vec::new(),
            walkers: Vec::new(),
            next_seq: 0,
            heap: BinaryHeap::new(),
        };
        let queued = sim.queued_messages().await?;
        let filter = EnrollmentFilter {
            running_only: true,
            ..EnrollmentFilter::default()
        };
        let running = all_enrollments(&*self.store, workspace_id, &filter).await?;
        let mut definitions = Definitions::new(&*self.store, workspace_id);
        let mut contacts: HashMap<ContactId, Arc<Contact>> = HashMap::new();
        for enrollment in running {
            let sequence = definitions.for_enrollment(&enrollment).await?;
            let contact = match contacts.get(&enrollment.contact_id) {
                Some(c) => Arc::clone(c),
                None => {
                    let c = Arc::new(
                        self.store
                            .get_contact(workspace_id, enrollment.contact_id)
                            .await?,
                    );
                    contacts.insert(c.id, Arc::clone(&c));
                    c
                }
            };
            let message = queued.get(&enrollment.id).cloned();
            sim.start(enrollment, sequence, contact, message);
        }
        sim.run().await?;
        Ok(sim.entries)
    }
}
