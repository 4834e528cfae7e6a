//! Shared set-up for the benchmarks in `benches/`: run them with `cargo bench -p benches`.
//!
//! Every benchmark measures the engine against a baseline run in the same process, on
//! the same machine and database, and prints the ratio; absolute numbers depend on the
//! machine, ratios much less.

use std::time::{Duration, Instant};

/// Times `work` and returns its result with the elapsed wall time.
pub async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
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
