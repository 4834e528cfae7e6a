//! Lead scoring: a per-workspace [`ScoringModel`], a pure score function with an
//! explaining breakdown, tier-change detection, and the [`Scorer`] service.
//!
//! - [`model`]: weights, factors, thresholds; versioned and validated.
//! - [`inputs`]: what a contact is scored on ([`ScoringInput`]).
//! - [`score`]: [`score_total`] (allocation-free fast path) and [`explain`] (the
//!   breakdown); integer centipoints so the breakdown sums exactly to the total.
//! - [`tier`]: tier changes and the events they emit.
//! - [`service`]: [`Scorer`] loads inputs, scores, writes scores with the model
//!   version, appends events, handles overrides and bulk rescoring; [`jobs`] wires it
//!   to the job queue.

pub mod jobs;
pub mod score;
pub mod service;
pub mod tier;

/// What a contact is scored on: re-exported from [`crate::model::scoring::inputs`], where
/// the store layer finds it.
pub mod inputs {
    pub use crate::model::scoring::inputs::*;
}

/// The scoring model: re-exported from [`crate::model::scoring::scoring_model`], where
/// the store layer finds it.
pub mod model {
    pub use crate::model::scoring::scoring_model::*;
}

/// Stored scores: re-exported from [`crate::model::scoring::record`], where the store
/// layer finds it.
pub mod record {
    pub use crate::model::scoring::record::*;
}

pub use inputs::{IntentSet, ScoringInput};
pub use jobs::{RescoreAllHandler, RescoreContactHandler, nightly_decay, scoring_routes};
pub use model::{
    Behavior, BehavioralFactor, Firmographics, IndustryFactor, Intent, IntentFactor, RangeFactor,
    ScoringModel, Thresholds, Tier, Weights,
};
pub use record::{ContactScore, ScoreOverride, ScoreWritten};
pub use score::{Breakdown, Component, Contribution, Factor, Score, explain, score_total};
pub use service::{
    PAGES_IN_FLIGHT, RESCORE_ALL, RESCORE_CONTACT, RescoreReport, Scorer, ScoringError,
};
pub use tier::{CONTACT_SCORED, LEAD_QUALIFIED, TierChange};

#[cfg(test)]
mod tests;
