//! Conformance suites for backend and adapter authors.
//!
//! **Not semver-stable.** The store suite writes to the store it is given; give it a
//! fresh, disposable one per case.
//!
//! ```ignore
//! // In a store crate's tests/conformance.rs:
//! async fn fresh_store() -> my_store::MyStore {
//!     my_store::MyStore::for_tests().await
//! }
//!
//! crm_testkit::store_conformance_tests!(fresh_store);
//! ```
//!
//! See [`store`] for the cases and
//! [`store_conformance_tests!`](crate::store_conformance_tests) for what the macro expands to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod adapter;
pub mod engine;
pub mod enrichment;
pub mod store;

#[doc(hidden)]
pub use tokio;

#[doc(hidden)]
pub use crm_core as __core;
