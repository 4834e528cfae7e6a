//! Whether one graduated rule matches one send: a pure function, no I/O.

use crate::ApprovalRequest;
use crate::model::{ApprovalItem, ApprovalRule};

/// What a rule is checked against: the facts of one send (or one inbox item).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RuleFacts {
    /// The sequence step index (0-based), if the message came from a sequence.
    pub step_index: Option<i32>,
    /// The drafting confidence, 0.0 to 1.0, if known.
    pub confidence: Option<f64>,
    /// How many times in a row the message's template was approved without edits, or
    /// `None` when the message has no template key.
    pub clean_streak: Option<u32>,
}

impl RuleFacts {
    /// The facts of `request`, with the template's streak looked up by the caller
    /// (`None` when the request has no template key).
    #[must_use]
    pub fn of_request(request: &ApprovalRequest, clean_streak: Option<u32>) -> Self {
        Self {
            step_index: request.message.step_index,
            confidence: request.confidence,
            clean_streak: request.template_key.as_ref().and(clean_streak),
        }
    }

    /// The facts of an inbox item, with the template's streak looked up by the caller
    /// (`None` when the item has no template key).
    #[must_use]
    pub fn of_item(item: &ApprovalItem, clean_streak: Option<u32>) -> Self {
        Self {
            step_index: item.step_index,
            confidence: item.confidence,
            clean_streak: item.template_key.as_ref().and(clean_streak),
        }
    }
}

/// Why a rule does not match; its `Display` is the reason shown to people.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NotMatched {
    /// The rule is switched off.
    #[error("the rule is disabled")]
    Disabled,
    /// The rule limits the step number and the message has none.
    #[error("the message has no sequence step, and the rule only allows steps up to {max}")]
    NoStep {
        /// The rule's highest step index.
        max: i32,
    },
    /// The message's step is later than the rule allows.
    #[error("step {step} is later than the rule's highest step {max}")]
    StepTooLate {
        /// The message's step index.
        step: i32,
        /// The rule's highest step index.
        max: i32,
    },
    /// The rule needs a confidence and none is known.
    #[error("the drafting confidence is unknown, and the rule needs at least {min}")]
    ConfidenceUnknown {
        /// The rule's minimum confidence.
        min: f64,
    },
    /// The confidence is below the rule's minimum (or not a number).
    #[error("confidence {confidence} is below the rule's minimum {min}")]
    ConfidenceTooLow {
        /// The message's confidence.
        confidence: f64,
        /// The rule's minimum confidence.
        min: f64,
    },
    /// The rule needs a template streak and the message has no template.
    #[error("the message has no template, and the rule needs {min} clean approvals in a row")]
    NoTemplate {
        /// The rule's minimum streak.
        min: u32,
    },
    /// The template's clean streak is shorter than the rule needs.
    #[error("the template was approved without edits {streak} times in a row, fewer than {min}")]
    StreakTooShort {
        /// The template's current streak.
        streak: u32,
        /// The rule's minimum streak.
        min: u32,
    },
}

/// Whether `rule` approves a send with `facts`: it must be enabled and ALL its present
/// conditions must hold. Conditions are checked in a fixed order (enabled, step,
/// confidence, streak) and the first that fails is returned.
///
/// - `max_step_index`: the step index is known and at most the maximum; a message
///   without a step never matches a step rule.
/// - `min_confidence`: the confidence is known and at least the minimum; an unknown
///   (or NaN) confidence never matches.
/// - `min_clean_approvals`: the message has a template whose clean streak is at least
///   the minimum; a message without a template never matches.
///
/// The daily cap is not a condition here: it needs the store (see
/// [`GraduatedRules`](super::GraduatedRules)).
pub fn rule_matches(rule: &ApprovalRule, facts: &RuleFacts) -> Result<(), NotMatched> {
    if !rule.enabled {
        return Err(NotMatched::Disabled);
    }
    let conditions = &rule.conditions;
    if let Some(max) = conditions.max_step_index {
        match facts.step_index {
            None => return Err(NotMatched::NoStep { max }),
            Some(step) if step > max => return Err(NotMatched::StepTooLate { step, max }),
            Some(_) => {}
        }
    }
    if let Some(min) = conditions.min_confidence {
        match facts.confidence {
            None => return Err(NotMatched::ConfidenceUnknown { min }),
            // A NaN on either side is incomparable, so it never matches.
            Some(confidence)
                if !matches!(
                    confidence.partial_cmp(&min),
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ) =>
            {
                return Err(NotMatched::ConfidenceTooLow { confidence, min });
            }
            Some(_) => {}
        }
    }
    if let Some(min) = conditions.min_clean_approvals {
        match facts.clean_streak {
            None => return Err(NotMatched::NoTemplate { min }),
            Some(streak) if streak < min => {
                return Err(NotMatched::StreakTooShort { streak, min });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::model::{Channel, RuleConditions};
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    fn rule(conditions: RuleConditions) -> ApprovalRule {
        ApprovalRule::new(
            WorkspaceId::new(),
            Channel::Email,
            "test rule",
            conditions,
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .unwrap()
    }

    fn facts(step: Option<i32>, confidence: Option<f64>, streak: Option<u32>) -> RuleFacts {
        RuleFacts {
            step_index: step,
            confidence,
            clean_streak: streak,
        }
    }

    fn step_rule(max: i32) -> ApprovalRule {
        rule(RuleConditions {
            max_step_index: Some(max),
            ..RuleConditions::default()
        })
    }

    fn confidence_rule(min: f64) -> ApprovalRule {
        rule(RuleConditions {
            min_confidence: Some(min),
            ..RuleConditions::default()
        })
    }

    fn streak_rule(min: u32) -> ApprovalRule {
        rule(RuleConditions {
            min_clean_approvals: Some(min),
            ..RuleConditions::default()
        })
    }

    #[test]
    fn a_rule_without_conditions_matches_everything_while_enabled() {
        let any = rule(RuleConditions::default());
        assert_eq!(rule_matches(&any, &RuleFacts::default()), Ok(()));
        assert_eq!(
            rule_matches(&any, &facts(Some(9), Some(0.0), Some(0))),
            Ok(())
        );
        let mut off = any;
        off.enabled = false;
        assert_eq!(
            rule_matches(&off, &RuleFacts::default()),
            Err(NotMatched::Disabled)
        );
    }

    #[test]
    fn step_rules_match_known_steps_up_to_the_maximum() {
        let r = step_rule(1);
        assert_eq!(rule_matches(&r, &facts(Some(0), None, None)), Ok(()));
        assert_eq!(rule_matches(&r, &facts(Some(1), None, None)), Ok(()));
        assert_eq!(
            rule_matches(&r, &facts(Some(2), None, None)),
            Err(NotMatched::StepTooLate { step: 2, max: 1 })
        );
        assert_eq!(
            rule_matches(&r, &facts(None, Some(1.0), Some(99))),
            Err(NotMatched::NoStep { max: 1 })
        );
    }

    #[test]
    fn confidence_rules_need_a_known_confidence_at_least_the_minimum() {
        let r = confidence_rule(0.8);
        assert_eq!(rule_matches(&r, &facts(None, Some(0.8), None)), Ok(()));
        assert_eq!(rule_matches(&r, &facts(None, Some(1.0), None)), Ok(()));
        assert_eq!(
            rule_matches(&r, &facts(None, Some(0.79), None)),
            Err(NotMatched::ConfidenceTooLow {
                confidence: 0.79,
                min: 0.8
            })
        );
        assert_eq!(
            rule_matches(&r, &facts(Some(0), None, Some(5))),
            Err(NotMatched::ConfidenceUnknown { min: 0.8 })
        );
        assert!(matches!(
            rule_matches(&r, &facts(None, Some(f64::NAN), None)),
            Err(NotMatched::ConfidenceTooLow { .. })
        ));
    }

    #[test]
    fn streak_rules_need_a_template_with_a_long_enough_streak() {
        let r = streak_rule(3);
        assert_eq!(rule_matches(&r, &facts(None, None, Some(3))), Ok(()));
        assert_eq!(rule_matches(&r, &facts(None, None, Some(4))), Ok(()));
        assert_eq!(
            rule_matches(&r, &facts(None, None, Some(2))),
            Err(NotMatched::StreakTooShort { streak: 2, min: 3 })
        );
        assert_eq!(
            rule_matches(&r, &facts(Some(0), Some(1.0), None)),
            Err(NotMatched::NoTemplate { min: 3 })
        );
        assert_eq!(
            rule_matches(&streak_rule(0), &facts(None, None, Some(0))),
            Ok(())
        );
    }

    #[test]
    fn every_present_condition_must_hold_and_the_first_failure_is_named() {
        let all = rule(RuleConditions {
            max_step_index: Some(0),
            min_confidence: Some(0.9),
            min_clean_approvals: Some(2),
        });
        assert_eq!(
            rule_matches(&all, &facts(Some(0), Some(0.95), Some(2))),
            Ok(())
        );
        assert_eq!(
            rule_matches(&all, &facts(Some(1), Some(0.5), Some(0))),
            Err(NotMatched::StepTooLate { step: 1, max: 0 })
        );
        assert_eq!(
            rule_matches(&all, &facts(Some(0), Some(0.5), Some(0))),
            Err(NotMatched::ConfidenceTooLow {
                confidence: 0.5,
                min: 0.9
            })
        );
        assert_eq!(
            rule_matches(&all, &facts(Some(0), Some(0.95), Some(1))),
            Err(NotMatched::StreakTooShort { streak: 1, min: 2 })
        );
    }

    #[test]
    fn reasons_say_which_condition_failed() {
        let text = NotMatched::StepTooLate { step: 3, max: 1 }.to_string();
        assert!(text.contains("step 3"), "{text}");
        let text = NotMatched::NoTemplate { min: 4 }.to_string();
        assert!(text.contains("no template"), "{text}");
    }

    #[test]
    fn facts_without_a_template_have_no_streak() {
        use crate::model::OutboxMessage;
        let ws = WorkspaceId::new();
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let message =
            OutboxMessage::new(ws, Channel::Email, "a@example.com", "Hi", "k", now).unwrap();
        let request = ApprovalRequest {
            message,
            confidence: Some(0.5),
            template_key: None,
            step_requires_approval: false,
            now,
        };
        assert_eq!(RuleFacts::of_request(&request, Some(7)).clean_streak, None);
    }

    fn any_conditions() -> impl Strategy<Value = RuleConditions> {
        (
            proptest::option::of(-1i32..5),
            proptest::option::of(0.0f64..=1.0),
            proptest::option::of(0u32..6),
        )
            .prop_map(|(max_step_index, min_confidence, min_clean_approvals)| {
                RuleConditions {
                    max_step_index,
                    min_confidence,
                    min_clean_approvals,
                }
            })
    }

    fn any_facts() -> impl Strategy<Value = RuleFacts> {
        (
            proptest::option::of(-1i32..6),
            proptest::option::of(prop_oneof![0.0f64..=1.0, Just(f64::NAN)]),
            proptest::option::of(0u32..8),
        )
            .prop_map(|(step_index, confidence, clean_streak)| RuleFacts {
                step_index,
                confidence,
                clean_streak,
            })
    }

    proptest! {
        #[test]
        fn a_disabled_rule_never_approves(conditions in any_conditions(), f in any_facts()) {
            let mut r = rule(conditions);
            r.enabled = false;
            prop_assert_eq!(rule_matches(&r, &f), Err(NotMatched::Disabled));
        }

        #[test]
        fn raising_min_confidence_never_approves_more(
            conditions in any_conditions(),
            f in any_facts(),
            raise in 0.0f64..=1.0,
        ) {
            let lower = rule(conditions.clone());
            let mut raised = lower.clone();
            let base = conditions.min_confidence.unwrap_or(0.0);
            raised.conditions.min_confidence = Some((base + raise).min(1.0));
            if rule_matches(&raised, &f).is_ok() {
                prop_assert!(rule_matches(&lower, &f).is_ok());
            }
        }

        #[test]
        fn adding_a_condition_never_approves_more(
            conditions in any_conditions(),
            f in any_facts(),
        ) {
            let loose = rule(RuleConditions::default());
            let strict = rule(conditions);
            if rule_matches(&strict, &f).is_ok() {
                prop_assert!(rule_matches(&loose, &f).is_ok());
            }
        }
    }
}
