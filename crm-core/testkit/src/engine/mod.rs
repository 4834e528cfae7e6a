//! Engine scenarios run against a real store: the same cases on every backend.
//!
//! Each area exports a macro that expands to one named `#[tokio::test]` per case, taking
//! the same `fresh_store` path as
//! [`store_conformance_tests!`](crate::store_conformance_tests).

pub mod access;
pub mod approvals;
pub mod dispatch;
pub mod e2e;
pub mod engine_lifecycle;
pub mod enrichment;
pub mod inbound;
pub mod intake;
pub mod jobs;
pub mod runner;
pub mod scoring;
pub mod send_rule;
pub mod wake;
