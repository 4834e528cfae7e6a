//! Pure scoring throughput: `score_total` (the allocation-free path every rescore uses)
//! over one million varied contacts on one core, against the 5 million contacts per
//! second target, and against a hand-written baseline that computes the same
//! firmographic + behavioral + intent sum with constants baked in (what a scorer with
//! no model, no decay and no explanation costs on the same inputs).
//!
//! `cargo bench -p benches --bench scoring` (size: `BENCH_SCORING_CONTACTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use benches::{Bound, check, rate, report_ratio, seeded, size};
use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::money::{Currency, Money};
use crm_core::scoring::{
    Behavior, BehavioralFactor, Firmographics, IndustryFactor, Intent, IntentFactor, IntentSet,
    RangeFactor, ScoringInput, ScoringModel, Weights, explain, score_total,
};
use rand::RngExt;
use rand::rngs::StdRng;

const TARGET_PER_SEC: f64 = 5_000_000.0;
const INDUSTRIES: [&str; 6] = [
    "Software",
    "Manufacturing",
    "Healthcare",
    "Retail",
    "Food",
    "Financial Services",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()
}

/// A model with every kind of factor, as a workspace would configure it.
pub fn model(ws: WorkspaceId) -> ScoringModel {
    let mut m = ScoringModel::new(
        ws,
        Weights {
            firmographic: 40,
            behavioral: 35,
            intent: 25,
        },
        now(),
    )
    .unwrap();
    let range = |min, max, points| RangeFactor { min, max, points };
    m.firmographics = Firmographics {
        employee_ranges: vec![
            range(0, Some(49), 10),
            range(50, Some(999), 60),
            range(1000, None, 40),
        ],
        industries: ["Software", "Financial Services"]
            .iter()
            .map(|i| IndustryFactor {
                industry: (*i).into(),
                points: 40,
            })
            .collect(),
        revenue_ranges: vec![RangeFactor {
            min: 100_000_000_i64,
            max: None,
            points: 30,
        }],
        revenue_currency: Some(Currency::new("USD").unwrap()),
    };
    let behavior = |behavior, points, max_points| BehavioralFactor {
        behavior,
        points,
        max_points,
        decay_days: 30,
    };
    m.behavioral = vec![
        behavior(Behavior::Open, 5, 30),
        behavior(Behavior::Click, 15, 45),
        behavior(Behavior::Visit, 10, 25),
    ];
    m.intent = [
        (Intent::DemoRequest, 50),
        (Intent::PricingView, 20),
        (Intent::TrialSignup, 30),
        (Intent::ContactForm, 20),
    ]
    .into_iter()
    .map(|(intent, points)| IntentFactor { intent, points })
    .collect();
    m.validate().unwrap();
    m
}

/// `count` contacts with 0 to 5 of each behavior in the last 40 days and a few intents.
pub fn inputs(ws: WorkspaceId, count: usize) -> Vec<ScoringInput> {
    let mut rng = seeded(42);
    let usd = Currency::new("USD").unwrap();
    (0..count)
        .map(|_| {
            let mut input = ScoringInput::empty(ws, ContactId::new());
            input.employee_count = Some(u32::try_from(rng.random_range(0..5000_u64)).unwrap());
            input.industry = Some(INDUSTRIES[rng.random_range(0..INDUSTRIES.len())].to_owned());
            input.annual_revenue = Some(
                Money::new(
                    i64::try_from(rng.random_range(0..500_000_000_u64)).unwrap(),
                    usd,
                )
                .unwrap(),
            );
            let times = |rng: &mut StdRng| -> Vec<DateTime<Utc>> {
                (0..rng.random_range(0..6))
                    .map(|_| {
                        now()
                            - Duration::hours(
                                i64::try_from(rng.random_range(0..40 * 24_u64)).unwrap(),
                            )
                    })
                    .collect()
            };
            input.opens = times(&mut rng);
            input.clicks = times(&mut rng);
            input.visits = times(&mut rng);
            let mut intents = IntentSet::default();
            for intent in [
                Intent::DemoRequest,
                Intent::PricingView,
                Intent::TrialSignup,
                Intent::ContactForm,
            ] {
                if rng.random_range(0..4) == 0 {
                    intents.insert(intent);
                }
            }
            input.intents = intents;
            input.normalize();
            input
        })
        .collect()
}

/// The same points with everything hard-coded and no decay: the floor a model-driven
/// scorer is compared against.
fn baseline(input: &ScoringInput) -> u32 {
    let employees = match input.employee_count {
        Some(0..=49) => 10,
        Some(50..=999) => 60,
        Some(_) => 40,
        None => 0,
    };
    let industry = match input.industry.as_deref() {
        Some(i) if i.eq_ignore_ascii_case("Software") => 40,
        Some(i) if i.eq_ignore_ascii_case("Financial Services") => 40,
        _ => 0,
    };
    let revenue = match input.annual_revenue {
        Some(m) if m.minor_units() >= 100_000_000 => 30,
        _ => 0,
    };
    let firmographic = (employees + industry + revenue).min(100);
    let behavioral = ((input.opens.len() as u32 * 5).min(30)
        + (input.clicks.len() as u32 * 15).min(45)
        + (input.visits.len() as u32 * 10).min(25))
    .min(100);
    let mut intent = 0;
    for (i, p) in [
        (Intent::DemoRequest, 50),
        (Intent::PricingView, 20),
        (Intent::TrialSignup, 30),
        (Intent::ContactForm, 20),
    ] {
        if input.intents.contains(i) {
            intent += p;
        }
    }
    (firmographic * 40 + behavioral * 35 + intent.min(100) * 25) / 100
}

fn main() {
    let count = size("BENCH_SCORING_CONTACTS", 1_000_000, 10_000);
    let ws = WorkspaceId::new();
    let model = model(ws);
    let inputs = inputs(ws, count);
    let at = now();

    // Warm caches once, then take the best of three runs of each.
    let best = |f: &dyn Fn() -> u64| {
        (0..3)
            .map(|_| {
                // Measures elapsed real time, which no Clock stands in for.
                #[allow(clippy::disallowed_methods)]
                let start = Instant::now();
                black_box(f());
                start.elapsed()
            })
            .min()
            .unwrap()
    };
    let engine = best(&|| {
        inputs
            .iter()
            .map(|i| u64::from(score_total(black_box(&model), black_box(i), at).total))
            .sum()
    });
    let hand = best(&|| {
        inputs
            .iter()
            .map(|i| u64::from(baseline(black_box(i))))
            .sum()
    });
    let explained = best(&|| {
        inputs
            .iter()
            .map(|i| explain(&model, i, at).contributions.len() as u64)
            .sum()
    });
    // The explanation and the fast path agree on every contact.
    check(
        inputs
            .iter()
            .all(|i| explain(&model, i, at).score == score_total(&model, i, at)),
        || "scoring: explain and score_total disagree".to_owned(),
    );

    let n = count as u64;
    let engine_rate = rate(n, engine);
    let hand_rate = rate(n, hand);
    println!(
        "scoring/pure score_total {count} contacts in {:.3} s = {engine_rate:>11.0}/s on one core",
        engine.as_secs_f64(),
    );
    println!(
        "scoring/pure hard-coded baseline        = {hand_rate:>11.0}/s; engine/baseline = {:.2}x",
        engine_rate / hand_rate
    );
    println!(
        "scoring/pure explain (full breakdown)   = {:>11.0}/s",
        rate(n, explained)
    );
    report_ratio(
        "scoring.score_total_vs_5M_per_s",
        engine_rate / TARGET_PER_SEC,
        Bound::AtLeast,
        1.0,
    );
}
