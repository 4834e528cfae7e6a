//! Shared set-up for the benchmarks in `benches/`: run them with `cargo bench -p benches`.
//!
//! Every benchmark measures the engine against a baseline run in the same process, on
//! the same machine and database, and prints one line per target:
//!
//! ```text
//! ratio dispatch.pg_vs_batched_0ms = 0.81 (target >= 0.70)
//! ```
//!
//! with `MISSED` appended when a full run misses its target. A missed target never
//! fails the run; a failed correctness check (a message handed to the adapter twice,
//! counts that do not match) does, with a non-zero exit.
//!
//! **Quick mode** (`BENCH_QUICK=1`, or a bench binary run without `--bench`, as
//! `cargo test --benches` does): small sizes, a few seconds per bench, so CI runs every
//! bench's checks on every change. Ratios are still printed but are not measurements.
//!
//! Bench support code: a failed set-up is a bug in the bench, so it panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

pub mod adapter;
pub mod approval_latency;
pub mod outbox_scenario;
pub mod outbox_sql;

/// Times `work` and returns its result with the elapsed wall time.
pub async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    // A bench measures elapsed real time: the one use of `Instant::now` it needs.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let out = work.await;
    (out, start.elapsed())
}

/// Times the synchronous `work`.
pub fn timed_sync<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    // A bench measures elapsed real time.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let out = work();
    (out, start.elapsed())
}

/// `count / elapsed` in items per second.
#[must_use]
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        f64::INFINITY
    }
}

/// A generator seeded with `seed`, so every run works on the same data.
#[must_use]
pub fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// Whether this run is in quick mode: `BENCH_QUICK=1`, or the binary was started
/// without `--bench` (`cargo test --benches` runs bench targets that way).
#[must_use]
pub fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench")
}

/// How many items a bench works on: `quick` in quick mode, else the `env` variable
/// when set to a number, else `default`.
#[must_use]
pub fn size(env: &str, default: usize, quick_size: usize) -> usize {
    if quick() {
        return quick_size;
    }
    std::env::var(env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which way a target bounds its ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The ratio must be at least the target (throughput ratios).
    AtLeast,
    /// The ratio must be at most the target (time ratios).
    AtMost,
}

/// Prints `ratio <name> = X.XX (target >= Y)` (or `<=`), with `MISSED` when a full run
/// misses the target, or `(quick mode)` in quick mode; answers whether it was met.
pub fn report_ratio(name: &str, value: f64, bound: Bound, target: f64) -> bool {
    let (op, met) = match bound {
        Bound::AtLeast => (">=", value >= target),
        Bound::AtMost => ("<=", value <= target),
    };
    let tail = if quick() {
        " (quick mode: not a measurement)"
    } else if met {
        ""
    } else {
        " MISSED"
    };
    println!("ratio {name} = {value:.2} (target {op} {target:.2}){tail}");
    met
}

/// A correctness check: prints `CHECK FAILED` and exits with status 1 when `ok` is
/// false, so CI fails on it (a missed speed target never does).
pub fn check(ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        eprintln!("CHECK FAILED: {}", what());
        std::process::exit(1);
    }
}
