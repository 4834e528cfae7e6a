//! Runnable examples of the CRM engine live in `examples/`; run one with `cargo run --example NAME`.
//!
//! This library holds what the examples share.

/// Installs a `tracing` subscriber printing to stderr, filtered by `RUST_LOG`
/// (default: warnings only, so the examples' own output stays readable). With
/// `RUST_LOG=info` the engine's spans (runner ticks, dispatch batches, jobs) show,
/// carrying ids only.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second call (another example in the same process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The repository README; its "Wire it into your app" block is compiled (and its other
/// Rust blocks checked) as this crate's doctest, so the README cannot drift from the API.
#[doc = include_str!("../../README.md")]
pub mod readme {}
