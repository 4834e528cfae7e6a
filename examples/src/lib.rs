//! Runnable examples of the CRM engine live in `examples/`; run one with `cargo run --example NAME`.
