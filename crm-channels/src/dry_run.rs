//! [`DryRunChannel`]: records what would be sent, sends nothing.
//!
//! It is the same adapter the dispatcher uses when dry-run is on, re-exported here so
//! a host that wires its channels from this crate finds it beside the real providers.

pub use crm_core::channel::dry_run::{DryRunChannel, DryRunRecord};
