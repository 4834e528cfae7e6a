//! Shared set-up for the benchmarks in `benches/`: run them with `cargo bench -p benches`.
//!
//! Every benchmark measures the engine against a baseline run in the same process, on
//! the same machine and database, and prints the ratio; absolute numbers depend on the
//! machine, ratios much less.

use std::time::{Duration, Instant};

/// Times `work` and returns its result with the elapsed wall time.
pub async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    // A bench measures elapsed real time: the one use of `Instant::now` it needs.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let out = work.await;
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

/// How many items a bench works on: `quick` under `cargo test --benches` (which runs
/// bench targets without `--bench`, so they stay short), else the `env` variable when
/// set to a number, else `default`.
#[must_use]
pub fn size(env: &str, default: usize, quick: usize) -> usize {
    if !std::env::args().any(|a| a == "--bench") {
        return quick;
    }
    std::env::var(env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
