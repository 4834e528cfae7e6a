//! Lead-scoring data: the per-workspace [`ScoringModel`], what a contact is scored on
//! ([`ScoringInput`]), a score's [`Breakdown`], and what a store keeps per contact
//! ([`ContactScore`], [`ScoreOverride`], [`ScoreWritten`]).
//!
//! These are the values the [`ScoringStore`](crate::store::ScoringStore) exchanges, so
//! they sit on the model floor and import nothing from the scoring engine; the engine
//! re-exports them under their historic paths.

pub mod breakdown;
pub mod inputs;
pub mod record;
pub mod scoring_model;

pub use breakdown::{Breakdown, Component, Contribution, Factor, Score};
pub use inputs::{IntentSet, ScoringInput, behavior_of, intent_of};
pub use record::{ContactScore, ScoreOverride, ScoreWritten};
pub use scoring_model::{
    Behavior, BehavioralFactor, Firmographics, IndustryFactor, Intent, IntentFactor, RangeFactor,
    ScoringModel, Thresholds, Tier, Weights,
};
