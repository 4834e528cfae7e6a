//! Tier-change detection: which events a new score emits.

use serde::{Deserialize, Serialize};

use crate::scoring::model::Tier;

/// Event kind appended when a contact's tier changes.
pub const CONTACT_SCORED: &str = "contact.scored";
/// Event kind appended when a contact reaches `Hot` or above from below.
pub const LEAD_QUALIFIED: &str = "lead.qualified";

/// A change of tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    /// The tier before; `None` for a contact never scored.
    pub previous: Option<Tier>,
    /// The tier now.
    pub current: Tier,
}

impl TierChange {
    /// The change from `previous` to `current`, or `None` when the tier stayed. A first
    /// score counts as a change (from no tier).
    #[must_use]
    pub fn detect(previous: Option<Tier>, current: Tier) -> Option<Self> {
        (previous != Some(current)).then_some(Self { previous, current })
    }

    /// Whether the change qualifies the lead: it reaches `Hot` or above from below
    /// (or from no tier).
    #[must_use]
    pub fn qualifies(&self) -> bool {
        self.current >= Tier::Hot && self.previous.is_none_or(|p| p < Tier::Hot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tier_is_no_change() {
        assert_eq!(TierChange::detect(Some(Tier::Warm), Tier::Warm), None);
        let c = TierChange::detect(None, Tier::Cold).unwrap();
        assert!(!c.qualifies());
    }

    #[test]
    fn qualifying_means_crossing_into_hot() {
        assert!(
            TierChange::detect(Some(Tier::Warm), Tier::Hot)
                .unwrap()
                .qualifies()
        );
        assert!(
            TierChange::detect(None, Tier::SalesReady)
                .unwrap()
                .qualifies()
        );
        assert!(
            !TierChange::detect(Some(Tier::Hot), Tier::SalesReady)
                .unwrap()
                .qualifies()
        );
        assert!(
            !TierChange::detect(Some(Tier::SalesReady), Tier::Warm)
                .unwrap()
                .qualifies()
        );
    }
}
