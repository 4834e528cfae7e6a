//! The per-workspace scoring model: component weights, factors and tier thresholds.
//!
//! A model is versioned: every saved change gets the next version, and every stored
//! score records the version it was computed with, so an old score stays explainable
//! by loading that version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::money::Currency;
use crate::text_enum::text_enum;

text_enum! {
    /// How ready a lead is, from coldest to hottest. Ordered: `Cold < Warm < Hot <
    /// SalesReady`.
    pub enum Tier {
        /// Below the warm threshold.
        Cold = "cold",
        /// At or above the warm threshold.
        Warm = "warm",
        /// At or above the hot threshold.
        Hot = "hot",
        /// At or above the sales-ready threshold.
        SalesReady = "sales_ready",
    }
}

text_enum! {
    /// A behavioral signal: something the contact did that shows engagement.
    pub enum Behavior {
        /// Opened a message.
        Open = "open",
        /// Clicked a link.
        Click = "click",
        /// Visited the website.
        Visit = "visit",
    }
}

text_enum! {
    /// An intent signal: something the contact did that shows buying intent.
    pub enum Intent {
        /// Asked for a demo (or booked a meeting).
        DemoRequest = "demo_request",
        /// Looked at the pricing page.
        PricingView = "pricing_view",
        /// Signed up for a trial.
        TrialSignup = "trial_signup",
        /// Sent the contact form.
        ContactForm = "contact_form",
    }
}

/// Points for a value within `[min, max]` (inclusive; `max: None` means unbounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeFactor<T> {
    /// Lowest matching value.
    pub min: T,
    /// Highest matching value; `None` for no upper bound.
    pub max: Option<T>,
    /// Points (0 to 100 of the firmographic component) when the value is in range.
    pub points: u8,
}

impl<T: PartialOrd + Copy> RangeFactor<T> {
    /// Whether `value` lies in the range.
    #[must_use]
    pub fn contains(&self, value: T) -> bool {
        value >= self.min && self.max.is_none_or(|max| value <= max)
    }
}

/// Points for an account in one industry (compared ASCII case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndustryFactor {
    /// Industry label.
    pub industry: String,
    /// Points of the firmographic component.
    pub points: u8,
}

/// Firmographic factors: who the contact's company is. For each kind the first
/// matching entry counts; the component is capped at 100.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmographics {
    /// Head-count ranges.
    pub employee_ranges: Vec<RangeFactor<u32>>,
    /// Industries.
    pub industries: Vec<IndustryFactor>,
    /// Annual revenue ranges in minor units of `revenue_currency`; revenue in another
    /// currency matches no range (no exchange rates in the engine).
    pub revenue_ranges: Vec<RangeFactor<i64>>,
    /// The currency of `revenue_ranges`.
    pub revenue_currency: Option<Currency>,
}

/// A behavioral factor: points per occurrence, fading linearly to zero over
/// `decay_days`, capped at `max_points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehavioralFactor {
    /// Which behavior.
    pub behavior: Behavior,
    /// Points per fresh occurrence.
    pub points: u8,
    /// Most points this factor gives however many occurrences there are.
    pub max_points: u8,
    /// Days after which an occurrence is worth nothing (1 or more).
    pub decay_days: u16,
}

/// The half-life of intent signals when a model names none: 30 days. A signal seen
/// 30 days ago counts half, 60 days ago a quarter.
pub const DEFAULT_INTENT_HALF_LIFE_DAYS: u16 = 30;

fn default_intent_half_life_days() -> u16 {
    DEFAULT_INTENT_HALF_LIFE_DAYS
}

/// An intent factor: points when the signal was seen, halving every
/// [`ScoringModel::intent_half_life_days`] since it was last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFactor {
    /// Which signal.
    pub intent: Intent,
    /// Points of the intent component.
    pub points: u8,
}

/// Component weights in percent; they sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Weight of the firmographic component.
    pub firmographic: u8,
    /// Weight of the behavioral component.
    pub behavioral: u8,
    /// Weight of the intent component.
    pub intent: u8,
}

/// Tier thresholds on the 0-100 total; `warm < hot < sales_ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Lowest total of `SalesReady` (default 90).
    pub sales_ready: u8,
    /// Lowest total of `Hot` (default 70).
    pub hot: u8,
    /// Lowest total of `Warm` (default 50).
    pub warm: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            sales_ready: 90,
            hot: 70,
            warm: 50,
        }
    }
}

impl Thresholds {
    /// The tier of `total`.
    #[must_use]
    pub const fn tier(&self, total: u8) -> Tier {
        if total >= self.sales_ready {
            Tier::SalesReady
        } else if total >= self.hot {
            Tier::Hot
        } else if total >= self.warm {
            Tier::Warm
        } else {
            Tier::Cold
        }
    }
}

/// A workspace's scoring model, at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoringModel {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Version: 1 for the first model, +1 for every saved change.
    pub version: i64,
    /// Component weights.
    pub weights: Weights,
    /// Firmographic factors.
    pub firmographics: Firmographics,
    /// Behavioral factors.
    pub behavioral: Vec<BehavioralFactor>,
    /// Intent factors.
    pub intent: Vec<IntentFactor>,
    /// Days after which an intent signal counts half (exponential decay from its
    /// latest occurrence; 1 or more). Models stored before intent signals decayed
    /// load with [`DEFAULT_INTENT_HALF_LIFE_DAYS`].
    #[serde(default = "default_intent_half_life_days")]
    pub intent_half_life_days: u16,
    /// Tier thresholds.
    pub thresholds: Thresholds,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
}

impl ScoringModel {
    /// A version-1 model with the given weights and default thresholds, no factors.
    pub fn new(
        workspace_id: WorkspaceId,
        weights: Weights,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let model = Self {
            workspace_id,
            version: 1,
            weights,
            firmographics: Firmographics::default(),
            behavioral: Vec::new(),
            intent: Vec::new(),
            intent_half_life_days: DEFAULT_INTENT_HALF_LIFE_DAYS,
            thresholds: Thresholds::default(),
            created_at: now,
        };
        model.validate()?;
        Ok(model)
    }

    /// The next version of this model, to edit and save (`version + 1`).
    #[must_use]
    pub fn next_version(&self, now: DateTime<Utc>) -> Self {
        let mut next = self.clone();
        next.version = self.version.saturating_add(1);
        next.created_at = now;
        next
    }

    /// Checks the rules every stored model keeps: weights sum to 100, thresholds are
    /// ordered `0 < warm < hot < sales_ready <= 100`, points are 0 to 100, ranges have
    /// `min <= max`, decay and the intent half-life are at least one day, and no
    /// behavior or intent is listed twice.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let w = self.weights;
        let sum = u16::from(w.firmographic) + u16::from(w.behavioral) + u16::from(w.intent);
        if sum != 100 {
            return Err(ValidationError::new(
                "scoring.weights",
                format!("must sum to 100, not {sum}"),
            ));
        }
        let t = self.thresholds;
        if !(0 < t.warm && t.warm < t.hot && t.hot < t.sales_ready && t.sales_ready <= 100) {
            return Err(ValidationError::new(
                "scoring.thresholds",
                "must be ordered 0 < warm < hot < sales_ready <= 100",
            ));
        }
        if self.version < 1 {
            return Err(ValidationError::new(
                "scoring.version",
                "must be at least 1",
            ));
        }
        let f = &self.firmographics;
        check_ranges("scoring.employee_ranges", &f.employee_ranges)?;
        check_ranges("scoring.revenue_ranges", &f.revenue_ranges)?;
        if !f.revenue_ranges.is_empty() && f.revenue_currency.is_none() {
            return Err(ValidationError::new(
                "scoring.revenue_currency",
                "is required with revenue ranges",
            ));
        }
        for i in &f.industries {
            crate::model::rules::require_text("scoring.industries", &i.industry)?;
            check_points("scoring.industries", i.points)?;
        }
        for (n, b) in self.behavioral.iter().enumerate() {
            check_points("scoring.behavioral", b.points)?;
            check_points("scoring.behavioral", b.max_points)?;
            if b.decay_days == 0 {
                return Err(ValidationError::new(
                    "scoring.behavioral",
                    "decay_days must be at least 1",
                ));
            }
            if self.behavioral[..n]
                .iter()
                .any(|o| o.behavior == b.behavior)
            {
                return Err(ValidationError::new(
                    "scoring.behavioral",
                    format!("{} is listed twice", b.behavior),
                ));
            }
        }
        if self.intent_half_life_days == 0 {
            return Err(ValidationError::new(
                "scoring.intent_half_life_days",
                "must be at least 1",
            ));
        }
        for (n, i) in self.intent.iter().enumerate() {
            check_points("scoring.intent", i.points)?;
            if self.intent[..n].iter().any(|o| o.intent == i.intent) {
                return Err(ValidationError::new(
                    "scoring.intent",
                    format!("{} is listed twice", i.intent),
                ));
            }
        }
        Ok(())
    }

    /// The longest decay of any behavioral factor, in days: older activity scores
    /// nothing, so input loaders may skip it.
    #[must_use]
    pub fn max_decay_days(&self) -> u16 {
        self.behavioral
            .iter()
            .map(|b| b.decay_days)
            .max()
            .unwrap_or(0)
    }
}

fn check_points(field: &'static str, points: u8) -> Result<(), ValidationError> {
    if points > 100 {
        return Err(ValidationError::new(field, "points must be 0 to 100"));
    }
    Ok(())
}

fn check_ranges<T: PartialOrd + Copy>(
    field: &'static str,
    ranges: &[RangeFactor<T>],
) -> Result<(), ValidationError> {
    for r in ranges {
        check_points(field, r.points)?;
        if r.max.is_some_and(|max| max < r.min) {
            return Err(ValidationError::new(field, "min must not exceed max"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(f: u8, b: u8, i: u8) -> Weights {
        Weights {
            firmographic: f,
            behavioral: b,
            intent: i,
        }
    }

    #[test]
    fn weights_must_sum_to_100() {
        let ws = WorkspaceId::new();
        assert!(ScoringModel::new(ws, weights(30, 40, 30), DateTime::UNIX_EPOCH).is_ok());
        let err = ScoringModel::new(ws, weights(30, 40, 31), DateTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.field(), "scoring.weights");
    }

    #[test]
    fn thresholds_must_be_ordered() {
        let mut m = ScoringModel::new(
            WorkspaceId::new(),
            weights(30, 40, 30),
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        m.thresholds.hot = 95;
        assert_eq!(m.validate().unwrap_err().field(), "scoring.thresholds");
        m.thresholds = Thresholds::default();
        m.behavioral.push(BehavioralFactor {
            behavior: Behavior::Open,
            points: 5,
            max_points: 20,
            decay_days: 0,
        });
        assert_eq!(m.validate().unwrap_err().field(), "scoring.behavioral");
    }

    #[test]
    fn default_thresholds_give_the_documented_tiers() {
        let t = Thresholds::default();
        assert_eq!(t.tier(100), Tier::SalesReady);
        assert_eq!(t.tier(90), Tier::SalesReady);
        assert_eq!(t.tier(89), Tier::Hot);
        assert_eq!(t.tier(70), Tier::Hot);
        assert_eq!(t.tier(69), Tier::Warm);
        assert_eq!(t.tier(50), Tier::Warm);
        assert_eq!(t.tier(49), Tier::Cold);
        assert!(Tier::Cold < Tier::Warm && Tier::Hot < Tier::SalesReady);
    }
}
