//! What a contact is scored on, gathered from its account and its activity timeline.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ContactId, WorkspaceId};
use crate::model::scoring::scoring_model::{Behavior, Intent};
use crate::model::{Account, Activity, ActivityKind, Contact};
use crate::money::Money;

/// The intent signals seen, with the latest time each was seen (no allocation).
///
/// Intent factors decay from the latest occurrence of their signal (the scoring
/// model's `intent_half_life_days`). A signal inserted without a time
/// ([`insert`](Self::insert)) counts as fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntentSet {
    bits: u8,
    latest: [Option<DateTime<Utc>>; 4],
}

impl IntentSet {
    const fn index(intent: Intent) -> usize {
        match intent {
            Intent::DemoRequest => 0,
            Intent::PricingView => 1,
            Intent::TrialSignup => 2,
            Intent::ContactForm => 3,
        }
    }

    const fn bit(intent: Intent) -> u8 {
        1 << Self::index(intent)
    }

    /// Adds a signal seen at an unknown time (it counts as fresh).
    pub fn insert(&mut self, intent: Intent) {
        self.bits |= Self::bit(intent);
    }

    /// Adds a signal seen at `at`, keeping the latest time per signal.
    pub fn insert_at(&mut self, intent: Intent, at: DateTime<Utc>) {
        self.insert(intent);
        if let Some(slot) = self.latest.get_mut(Self::index(intent)) {
            *slot = Some(slot.map_or(at, |t| t.max(at)));
        }
    }

    /// Whether the signal was seen.
    #[must_use]
    pub const fn contains(&self, intent: Intent) -> bool {
        self.bits & Self::bit(intent) != 0
    }

    /// When the signal was last seen; `None` if it was not seen or only without a time.
    #[must_use]
    pub fn latest(&self, intent: Intent) -> Option<DateTime<Utc>> {
        if !self.contains(intent) {
            return None;
        }
        self.latest.get(Self::index(intent)).copied().flatten()
    }

    /// A set with the given signals, seen at unknown times.
    #[must_use]
    pub fn of(intents: &[Intent]) -> Self {
        let mut set = Self::default();
        for i in intents {
            set.insert(*i);
        }
        set
    }
}

/// One contact's scoring inputs.
///
/// Behavioral occurrences and intent signals keep their timestamps so decay is a
/// function of the clock argument only. Stores build these in bulk
/// ([`ScoringStore::list_scoring_inputs`](crate::store::ScoringStore::list_scoring_inputs));
/// [`ScoringInput::from_records`] is the reference derivation every store follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringInput {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The contact scored.
    pub contact_id: ContactId,
    /// Head count of the contact's account.
    pub employee_count: Option<u32>,
    /// Industry of the contact's account.
    pub industry: Option<String>,
    /// Annual revenue of the contact's account.
    pub annual_revenue: Option<Money>,
    /// When the contact opened messages.
    pub opens: Vec<DateTime<Utc>>,
    /// When the contact clicked links.
    pub clicks: Vec<DateTime<Utc>>,
    /// When the contact visited the website.
    pub visits: Vec<DateTime<Utc>>,
    /// Intent signals seen, with when each was last seen.
    pub intents: IntentSet,
}

/// The key in [`Activity::details`] naming a scoring signal (`"visit"`,
/// `"demo_request"`, `"pricing_view"`, `"trial_signup"`, `"contact_form"`, or a
/// behavior name): hosts record website visits and intent this way.
pub const SIGNAL_KEY: &str = "signal";

/// The behavior an activity shows, if any: `opened` and `clicked` activities, or a
/// behavior named in `details.signal`.
#[must_use]
pub fn behavior_of(activity: &Activity) -> Option<Behavior> {
    match activity.kind {
        ActivityKind::Opened => Some(Behavior::Open),
        ActivityKind::Clicked => Some(Behavior::Click),
        _ => signal(activity).and_then(|s| s.parse().ok()),
    }
}

/// The intent an activity shows, if any: a booked meeting counts as a demo request;
/// otherwise an intent named in `details.signal`.
#[must_use]
pub fn intent_of(activity: &Activity) -> Option<Intent> {
    match activity.kind {
        ActivityKind::MeetingBooked => Some(Intent::DemoRequest),
        _ => signal(activity).and_then(|s| s.parse().ok()),
    }
}

fn signal(activity: &Activity) -> Option<&str> {
    activity.details.get(SIGNAL_KEY).and_then(|v| v.as_str())
}

impl ScoringInput {
    /// Empty inputs for a contact: no account data, no activity.
    #[must_use]
    pub fn empty(workspace_id: WorkspaceId, contact_id: ContactId) -> Self {
        Self {
            workspace_id,
            contact_id,
            employee_count: None,
            industry: None,
            annual_revenue: None,
            opens: Vec::new(),
            clicks: Vec::new(),
            visits: Vec::new(),
            intents: IntentSet::default(),
        }
    }

    /// The reference derivation: firmographics from `account`, behaviors and intents
    /// from `activities` (those of other contacts are ignored). Occurrence lists are
    /// sorted ascending so two derivations compare equal.
    #[must_use]
    pub fn from_records(
        contact: &Contact,
        account: Option<&Account>,
        activities: &[Activity],
    ) -> Self {
        let mut input = Self::empty(contact.workspace_id, contact.id);
        if let Some(a) = account {
            input.employee_count = a.employee_count;
            input.industry.clone_from(&a.industry);
            input.annual_revenue = a.annual_revenue;
        }
        for activity in activities
            .iter()
            .filter(|a| a.contact_id == Some(contact.id))
        {
            input.add(activity);
        }
        input.normalize();
        input
    }

    /// Adds one activity's behavior or intent.
    pub fn add(&mut self, activity: &Activity) {
        match behavior_of(activity) {
            Some(Behavior::Open) => self.opens.push(activity.occurred_at),
            Some(Behavior::Click) => self.clicks.push(activity.occurred_at),
            Some(Behavior::Visit) => self.visits.push(activity.occurred_at),
            None => {}
        }
        if let Some(intent) = intent_of(activity) {
            self.intents.insert_at(intent, activity.occurred_at);
        }
    }

    /// Sorts occurrence lists ascending.
    pub fn normalize(&mut self) {
        self.opens.sort_unstable();
        self.clicks.sort_unstable();
        self.visits.sort_unstable();
    }

    /// The occurrences of `behavior`.
    #[must_use]
    pub fn occurrences(&self, behavior: Behavior) -> &[DateTime<Utc>] {
        match behavior {
            Behavior::Open => &self.opens,
            Behavior::Click => &self.clicks,
            Behavior::Visit => &self.visits,
        }
    }
}
