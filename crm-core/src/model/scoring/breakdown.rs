//! A score's explanation: the total, its tier, and the contributions that make it up.
//!
//! These are the values a store keeps with a contact's score
//! ([`ContactScore`](super::record::ContactScore)); the scoring engine computes them.
//! Every amount is in *centipoints* (hundredths of a point), so a breakdown sums
//! exactly to `total * 100`.

use serde::{Deserialize, Serialize};

use crate::model::scoring::scoring_model::{Behavior, Intent, Tier};
use crate::text_enum::text_enum;

text_enum! {
    /// The three components of a score.
    pub enum Component {
        /// Who the company is.
        Firmographic = "firmographic",
        /// How the contact engages.
        Behavioral = "behavioral",
        /// What the contact showed interest in.
        Intent = "intent",
        /// Not a component: whole-point rounding of the total.
        Total = "total",
    }
}

/// What a contribution is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Factor {
    /// The account's head count fell in this range.
    EmployeeRange {
        /// Range start.
        min: u32,
        /// Range end.
        max: Option<u32>,
    },
    /// The account is in this industry.
    Industry {
        /// Industry label, as configured.
        industry: String,
    },
    /// The account's revenue fell in this range (minor units).
    RevenueRange {
        /// Range start.
        min: i64,
        /// Range end.
        max: Option<i64>,
    },
    /// Occurrences of a behavior, after decay and the factor cap.
    Behavior {
        /// Which behavior.
        behavior: Behavior,
        /// How many occurrences were counted (decayed ones included).
        occurrences: u32,
    },
    /// An intent signal was seen.
    Intent {
        /// Which signal.
        intent: Intent,
    },
    /// The component's contributions passed its weight; this entry takes the excess off.
    ComponentCap,
    /// The fraction of a point dropped by rounding the total down.
    Rounding,
}

/// One line of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// The component it belongs to.
    pub component: Component,
    /// What it is for.
    pub factor: Factor,
    /// Centipoints of the total (negative for caps and rounding).
    pub centipoints: i32,
}

/// A total with its tier: what the fast path returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// 0 to 100.
    pub total: u8,
    /// The tier of `total` under the model's thresholds.
    pub tier: Tier,
}

/// A score and the contributions that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The score.
    pub score: Score,
    /// Every contribution; their centipoints sum to `score.total * 100`.
    pub contributions: Vec<Contribution>,
}

impl Breakdown {
    /// The sum of the contributions, in centipoints.
    #[must_use]
    pub fn sum_centipoints(&self) -> i64 {
        self.contributions
            .iter()
            .map(|c| i64::from(c.centipoints))
            .sum()
    }
}
