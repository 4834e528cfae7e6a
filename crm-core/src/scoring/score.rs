//! The pure score function: a total from 0 to 100, its tier, and a breakdown that
//! explains every point.
//!
//! # Arithmetic
//! Everything is integer, in *centipoints* (hundredths of a point):
//! - A factor's value is in centipoints of its component (0 to 10 000). A behavioral
//!   occurrence of age `a` is worth `points * 100 * (decay - a) / decay` (linear decay to
//!   zero after `decay_days`; an occurrence in the future counts as fresh); a behavior is
//!   capped at `max_points`.
//! - An intent factor is worth `points * 100 * 2^(-a / half_life)` (floored) for the
//!   age `a` of the latest occurrence of its signal: exponential decay with the
//!   model's `intent_half_life_days` (a signal one half-life old counts half; one
//!   seen at an unknown time or in the future counts as fresh). Points are at most
//!   100, so after [`INTENT_HORIZON_HALF_LIVES`] half-lives a signal is worth nothing.
//! - A factor contributes `value * weight / 100` centipoints of the total (floored).
//! - A component's contributions are capped at `weight * 100`; the cut is a
//!   [`Factor::ComponentCap`] entry.
//! - The total is the sum, floored to whole points; the dropped fraction is a
//!   [`Factor::Rounding`] entry.
//!
//! So the breakdown's centipoints always sum to exactly `total * 100`.
//!
//! [`score_total`] and [`explain`] run the same code ([`evaluate`] with a different
//! sink): the fast path allocates nothing, and both always agree.

use chrono::{DateTime, Utc};

pub use crate::model::scoring::breakdown::{Breakdown, Component, Contribution, Factor, Score};
use crate::model::scoring::inputs::ScoringInput;
use crate::model::scoring::scoring_model::ScoringModel;

const SECONDS_PER_DAY: i64 = 86_400;

/// After this many half-lives an intent signal is worth less than one centipoint
/// (at most 10 000 centipoints, and `2^14 > 10 000`), so it scores nothing and input
/// loaders may skip it.
pub const INTENT_HORIZON_HALF_LIVES: i64 = 14;

/// `value` centipoints decayed exponentially over `age` seconds with `half_life`
/// seconds (at least 1), floored; fresh (`age <= 0`) keeps it whole. Zero from
/// [`INTENT_HORIZON_HALF_LIVES`] half-lives on (exact for values up to 10 000, the
/// most a factor is worth).
#[must_use]
pub fn half_life_decay(value: i64, age: i64, half_life: i64) -> i64 {
    let half_life = half_life.max(1);
    if age <= 0 {
        return value;
    }
    if age >= half_life.saturating_mul(INTENT_HORIZON_HALF_LIVES) {
        return 0;
    }
    // Both fit f64 exactly here: age < 14 half-lives of at most 65 535 days.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    {
        let factor = (-(age as f64) / (half_life as f64)).exp2();
        (value as f64 * factor).floor() as i64
    }
}

/// Receives contributions from [`evaluate`].
pub trait Sink {
    /// Records one contribution; `factor` is called only if the sink keeps it.
    fn add(&mut self, component: Component, centipoints: i32, factor: impl FnOnce() -> Factor);
}

/// A sink that keeps nothing: the allocation-free fast path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Sink for Discard {
    #[inline]
    fn add(&mut self, _: Component, _: i32, _: impl FnOnce() -> Factor) {}
}

impl Sink for Vec<Contribution> {
    fn add(&mut self, component: Component, centipoints: i32, factor: impl FnOnce() -> Factor) {
        self.push(Contribution {
            component,
            factor: factor(),
            centipoints,
        });
    }
}

/// The total and tier of `input` under `model` at `now`, without allocating.
#[must_use]
pub fn score_total(model: &ScoringModel, input: &ScoringInput, now: DateTime<Utc>) -> Score {
    evaluate(model, input, now, &mut Discard)
}

/// The score with its full breakdown; always agrees with [`score_total`].
#[must_use]
pub fn explain(model: &ScoringModel, input: &ScoringInput, now: DateTime<Utc>) -> Breakdown {
    let mut contributions = Vec::with_capacity(8);
    let score = evaluate(model, input, now, &mut contributions);
    Breakdown {
        score,
        contributions,
    }
}

/// Weighted contributions of one component, capped at its weight.
struct ComponentSum<'s, S: Sink> {
    sink: &'s mut S,
    component: Component,
    weight: i64,
    sum: i64,
}

impl<S: Sink> ComponentSum<'_, S> {
    /// Adds a factor worth `value` centipoints of the component (clamped to 0..=10 000).
    fn add(&mut self, value: i64, factor: impl FnOnce() -> Factor) {
        let weighted = value.clamp(0, 10_000) * self.weight / 100;
        self.sum += weighted;
        self.sink.add(self.component, to_i32(weighted), factor);
    }

    /// Applies the cap and returns the component's centipoints of the total.
    fn finish(self) -> i64 {
        let cap = self.weight * 100;
        if self.sum > cap {
            self.sink.add(self.component, to_i32(cap - self.sum), || {
                Factor::ComponentCap
            });
            cap
        } else {
            self.sum
        }
    }
}

/// Values here are bounded by 10 000 per factor times a few hundred factors; clamping
/// keeps the conversion total without a panic path.
fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

/// The scoring algorithm, reporting each contribution to `sink`.
pub fn evaluate<S: Sink>(
    model: &ScoringModel,
    input: &ScoringInput,
    now: DateTime<Utc>,
    sink: &mut S,
) -> Score {
    let w = model.weights;
    let mut total = 0i64;

    let mut firmo = ComponentSum {
        sink: &mut *sink,
        component: Component::Firmographic,
        weight: i64::from(w.firmographic),
        sum: 0,
    };
    let f = &model.firmographics;
    if let Some(count) = input.employee_count
        && let Some(r) = f.employee_ranges.iter().find(|r| r.contains(count))
    {
        firmo.add(i64::from(r.points) * 100, || Factor::EmployeeRange {
            min: r.min,
            max: r.max,
        });
    }
    if let Some(industry) = input.industry.as_deref()
        && let Some(i) = f
            .industries
            .iter()
            .find(|i| i.industry.trim().eq_ignore_ascii_case(industry.trim()))
    {
        firmo.add(i64::from(i.points) * 100, || Factor::Industry {
            industry: i.industry.clone(),
        });
    }
    if let Some(revenue) = input.annual_revenue
        && f.revenue_currency == Some(revenue.currency())
        && let Some(r) = f
            .revenue_ranges
            .iter()
            .find(|r| r.contains(revenue.minor_units()))
    {
        firmo.add(i64::from(r.points) * 100, || Factor::RevenueRange {
            min: r.min,
            max: r.max,
        });
    }
    total += firmo.finish();

    let mut behavioral = ComponentSum {
        sink: &mut *sink,
        component: Component::Behavioral,
        weight: i64::from(w.behavioral),
        sum: 0,
    };
    let now_s = now.timestamp();
    for b in &model.behavioral {
        let occurrences = input.occurrences(b.behavior);
        if occurrences.is_empty() {
            continue;
        }
        let decay = i64::from(b.decay_days.max(1)) * SECONDS_PER_DAY;
        let per = i64::from(b.points) * 100;
        let mut value = 0i64;
        for t in occurrences {
            let age = (now_s - t.timestamp()).max(0);
            if age < decay {
                value += per * (decay - age) / decay;
            }
        }
        let value = value.min(i64::from(b.max_points) * 100);
        let count = u32::try_from(occurrences.len()).unwrap_or(u32::MAX);
        behavioral.add(value, || Factor::Behavior {
            behavior: b.behavior,
            occurrences: count,
        });
    }
    total += behavioral.finish();

    let mut intent = ComponentSum {
        sink: &mut *sink,
        component: Component::Intent,
        weight: i64::from(w.intent),
        sum: 0,
    };
    let half_life = i64::from(model.intent_half_life_days.max(1)) * SECONDS_PER_DAY;
    for i in &model.intent {
        if input.intents.contains(i.intent) {
            let age = input
                .intents
                .latest(i.intent)
                .map_or(0, |t| now_s - t.timestamp());
            let value = half_life_decay(i64::from(i.points) * 100, age, half_life);
            intent.add(value, || Factor::Intent { intent: i.intent });
        }
    }
    total += intent.finish();

    let total = total.clamp(0, 10_000);
    let rounding = total % 100;
    if rounding != 0 {
        sink.add(Component::Total, to_i32(-rounding), || Factor::Rounding);
    }
    let points = u8::try_from(total / 100).unwrap_or(100);
    Score {
        total: points,
        tier: model.thresholds.tier(points),
    }
}
