//! Property and example tests of the pure score function.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use crate::ids::{ContactId, WorkspaceId};
use crate::money::{Currency, Money};
use crate::scoring::inputs::{IntentSet, ScoringInput};
use crate::scoring::model::*;
use crate::scoring::score::{Component, Factor, explain, score_total};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn usd() -> Currency {
    Currency::new("USD").unwrap()
}

fn model(f: u8, b: u8, i: u8) -> ScoringModel {
    let mut m = ScoringModel::new(
        WorkspaceId::new(),
        Weights {
            firmographic: f,
            behavioral: b,
            intent: i,
        },
        now(),
    )
    .unwrap();
    m.firmographics = Firmographics {
        employee_ranges: vec![
            RangeFactor {
                min: 0,
                max: Some(49),
                points: 10,
            },
            RangeFactor {
                min: 50,
                max: Some(999),
                points: 60,
            },
            RangeFactor {
                min: 1000,
                max: None,
                points: 40,
            },
        ],
        industries: vec![IndustryFactor {
            industry: "SaaS".into(),
            points: 40,
        }],
        revenue_ranges: vec![RangeFactor {
            min: 100_000_000,
            max: None,
            points: 30,
        }],
        revenue_currency: Some(usd()),
    };
    m.behavioral = vec![
        BehavioralFactor {
            behavior: Behavior::Open,
            points: 5,
            max_points: 30,
            decay_days: 30,
        },
        BehavioralFactor {
            behavior: Behavior::Click,
            points: 15,
            max_points: 45,
            decay_days: 30,
        },
        BehavioralFactor {
            behavior: Behavior::Visit,
            points: 10,
            max_points: 40,
            decay_days: 14,
        },
    ];
    m.intent = vec![
        IntentFactor {
            intent: Intent::DemoRequest,
            points: 60,
        },
        IntentFactor {
            intent: Intent::PricingView,
            points: 30,
        },
        IntentFactor {
            intent: Intent::TrialSignup,
            points: 50,
        },
        IntentFactor {
            intent: Intent::ContactForm,
            points: 20,
        },
    ];
    m.validate().unwrap();
    m
}

fn input() -> ScoringInput {
    ScoringInput::empty(WorkspaceId::new(), ContactId::new())
}

#[test]
fn empty_input_scores_zero_and_cold() {
    let m = model(30, 40, 30);
    let s = score_total(&m, &input(), now());
    assert_eq!((s.total, s.tier), (0, Tier::Cold));
    assert!(explain(&m, &input(), now()).contributions.is_empty());
}

#[test]
fn a_hand_computed_example() {
    let m = model(30, 40, 30);
    let mut i = input();
    i.employee_count = Some(120); // 60 firmographic points
    i.industry = Some("saas".into()); // 40 -> component 100 -> 30.00 total points
    i.clicks = vec![now(), now() - Duration::days(15)]; // 15 + 7.5 = 22.5 behavioral
    i.intents = IntentSet::of(&[Intent::PricingView]); // 30 intent -> 9.00
    // behavioral 22.5 * 40% = 9.00; total 30 + 9 + 9 = 48
    let b = explain(&m, &i, now());
    assert_eq!(b.score.total, 48);
    assert_eq!(b.score.tier, Tier::Cold);
    assert_eq!(b.sum_centipoints(), 4800);
    let click = b
        .contributions
        .iter()
        .find(|c| {
            matches!(
                c.factor,
                Factor::Behavior {
                    behavior: Behavior::Click,
                    occurrences: 2
                }
            )
        })
        .unwrap();
    assert_eq!(click.centipoints, 900);
}

#[test]
fn behavior_decays_to_nothing_and_caps() {
    let m = model(0, 100, 0);
    let mut i = input();
    i.visits = vec![now() - Duration::days(14)];
    assert_eq!(score_total(&m, &i, now()).total, 0);
    i.visits = vec![now() - Duration::days(7)];
    assert_eq!(score_total(&m, &i, now()).total, 5);
    i.visits = vec![now(); 10]; // 100 points, capped at 40
    assert_eq!(score_total(&m, &i, now()).total, 40);
}

#[test]
fn components_are_capped_with_an_explaining_entry() {
    let m = model(30, 40, 30);
    let mut i = input();
    i.intents = IntentSet::of(&[Intent::DemoRequest, Intent::TrialSignup]); // 110 -> 100
    let b = explain(&m, &i, now());
    assert_eq!(b.score.total, 30);
    let cap = b
        .contributions
        .iter()
        .find(|c| c.factor == Factor::ComponentCap)
        .unwrap();
    assert_eq!((cap.component, cap.centipoints), (Component::Intent, -300));
    assert_eq!(b.sum_centipoints(), 3000);
}

#[test]
fn revenue_in_another_currency_matches_no_range() {
    let m = model(100, 0, 0);
    let mut i = input();
    i.annual_revenue = Some(Money::new(500_000_000, usd()).unwrap());
    assert_eq!(score_total(&m, &i, now()).total, 30);
    i.annual_revenue = Some(Money::new(500_000_000, Currency::new("EUR").unwrap()).unwrap());
    assert_eq!(score_total(&m, &i, now()).total, 0);
}

#[test]
fn rounding_is_explained() {
    let m = model(33, 34, 33);
    let mut i = input();
    i.employee_count = Some(10); // 10 points * 33% = 3.30
    let b = explain(&m, &i, now());
    assert_eq!(b.score.total, 3);
    assert!(
        b.contributions
            .iter()
            .any(|c| c.factor == Factor::Rounding && c.centipoints == -30)
    );
    assert_eq!(b.sum_centipoints(), 300);
}

fn arb_weights() -> impl Strategy<Value = (u8, u8, u8)> {
    (0u8..=100)
        .prop_flat_map(|f| (Just(f), 0..=(100 - f)))
        .prop_map(|(f, b)| (f, b, 100 - f - b))
}

fn arb_input() -> impl Strategy<Value = ScoringInput> {
    let times = || proptest::collection::vec(-40i64 * 86_400..5 * 86_400, 0..40);
    (
        proptest::option::of(0u32..5000),
        proptest::option::of(prop_oneof![Just("SaaS"), Just("retail"), Just("saas ")]),
        proptest::option::of(0i64..1_000_000_000),
        times(),
        times(),
        times(),
        0u8..16,
    )
        .prop_map(|(emp, ind, rev, o, c, v, bits)| {
            let at = |s: Vec<i64>| {
                s.into_iter()
                    .map(|d| now() - Duration::seconds(d))
                    .collect()
            };
            let mut i = input();
            i.employee_count = emp;
            i.industry = ind.map(str::to_owned);
            i.annual_revenue = rev.map(|r| Money::new(r, usd()).unwrap());
            i.opens = at(o);
            i.clicks = at(c);
            i.visits = at(v);
            let all = [
                Intent::DemoRequest,
                Intent::PricingView,
                Intent::TrialSignup,
                Intent::ContactForm,
            ];
            i.intents = IntentSet::of(
                &all.iter()
                    .enumerate()
                    .filter(|(n, _)| bits & (1 << n) != 0)
                    .map(|(_, x)| *x)
                    .collect::<Vec<_>>(),
            );
            i
        })
}

proptest! {
    #[test]
    fn total_is_bounded_explained_and_agrees((f, b, i) in arb_weights(), input in arb_input()) {
        let m = model(f, b, i);
        let fast = score_total(&m, &input, now());
        let explained = explain(&m, &input, now());
        prop_assert!(fast.total <= 100);
        prop_assert_eq!(fast, explained.score);
        prop_assert_eq!(explained.sum_centipoints(), i64::from(fast.total) * 100);
        prop_assert_eq!(fast.tier, m.thresholds.tier(fast.total));
    }

    #[test]
    fn score_never_rises_as_time_passes(input in arb_input(), days in 0i64..60) {
        let m = model(20, 60, 20);
        let earlier = score_total(&m, &input, now()).total;
        let later = score_total(&m, &input, now() + Duration::days(days)).total;
        prop_assert!(later <= earlier);
    }
}

/// The intent component's centipoints for `intents` under `m` at `now()`.
fn intent_centipoints(m: &ScoringModel, intents: IntentSet) -> i32 {
    let mut i = input();
    i.intents = intents;
    explain(m, &i, now())
        .contributions
        .iter()
        .filter(|c| c.component == Component::Intent)
        .map(|c| c.centipoints)
        .sum()
}

fn seen(intent: Intent, days_ago: i64) -> IntentSet {
    let mut set = IntentSet::default();
    set.insert_at(intent, now() - Duration::days(days_ago));
    set
}

#[test]
fn an_intent_signal_one_half_life_old_counts_half() {
    let mut m = model(0, 0, 100);
    assert_eq!(m.intent_half_life_days, DEFAULT_INTENT_HALF_LIFE_DAYS);
    // Pricing view: 30 points -> 3000 centipoints of the intent component, weight 100 %.
    assert_eq!(intent_centipoints(&m, seen(Intent::PricingView, 0)), 3000);
    assert_eq!(intent_centipoints(&m, seen(Intent::PricingView, 30)), 1500);
    assert_eq!(intent_centipoints(&m, seen(Intent::PricingView, 60)), 750);
    assert_eq!(intent_centipoints(&m, seen(Intent::PricingView, 15)), 2121); // 3000 / sqrt 2
    m.intent_half_life_days = 7;
    assert_eq!(intent_centipoints(&m, seen(Intent::PricingView, 7)), 1500);
    assert_eq!(
        intent_centipoints(&m, seen(Intent::PricingView, 7 * 14)),
        0,
        "worth nothing after 14 half-lives"
    );
    assert_eq!(
        intent_centipoints(&m, IntentSet::of(&[Intent::PricingView])),
        3000,
        "a signal without a time counts as fresh"
    );
    let mut future = IntentSet::default();
    future.insert_at(Intent::PricingView, now() + Duration::days(3));
    assert_eq!(
        intent_centipoints(&m, future),
        3000,
        "the future counts as fresh"
    );
}

#[test]
fn an_intent_decays_from_its_latest_occurrence() {
    let m = model(0, 0, 100);
    let mut set = seen(Intent::DemoRequest, 90);
    set.insert_at(Intent::DemoRequest, now() - Duration::days(30));
    set.insert_at(Intent::DemoRequest, now() - Duration::days(60));
    assert_eq!(
        set.latest(Intent::DemoRequest),
        Some(now() - Duration::days(30))
    );
    assert_eq!(
        intent_centipoints(&m, set),
        3000,
        "60 points, one half-life old"
    );
    assert_eq!(set.latest(Intent::TrialSignup), None);
}

#[test]
fn stored_models_without_an_intent_half_life_load_with_the_default() {
    let m = model(30, 40, 30);
    let mut json = serde_json::to_value(&m).unwrap();
    json.as_object_mut()
        .unwrap()
        .remove("intent_half_life_days");
    let loaded: ScoringModel = serde_json::from_value(json).unwrap();
    assert_eq!(loaded.intent_half_life_days, 30);
    assert_eq!(loaded, m);
    let mut zero = m.clone();
    zero.intent_half_life_days = 0;
    assert!(zero.validate().is_err(), "a half-life is at least one day");
}

#[test]
fn activity_older_than_the_intent_horizon_is_not_loaded() {
    use crate::scoring::Scorer;
    let mut m = model(30, 40, 30);
    m.intent_half_life_days = 10;
    assert_eq!(
        Scorer::activity_since(&m, now()),
        now() - Duration::days(140)
    );
    m.intent.clear();
    assert_eq!(
        Scorer::activity_since(&m, now()),
        now() - Duration::days(30),
        "without intent factors only the longest behavioral decay counts"
    );
}
