//! `GET /metrics`: Prometheus text exposition.
//!
//! Two kinds of series:
//! - counted in this process: webhooks by provider and outcome, and the send latency
//!   histogram by channel (observed by [`HostChannels`](crate::channels::HostChannels));
//! - read from the database at scrape time (so every process reports the same,
//!   shared state): outbox messages by channel and status, jobs by status.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crm_core::model::Channel;
use sqlx::PgPool;

/// Upper bounds of the send latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One histogram: cumulative bucket counts, sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, slot) in LATENCY_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *slot += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// (provider, outcome) -> count; outcome is `DeliveryOutcome::as_str`.
    webhooks: BTreeMap<(String, &'static str), u64>,
    /// (channel, ok) -> latency.
    sends: BTreeMap<(Channel, bool), Histogram>,
}

/// The in-process metrics, shared by the routes and the channel wrapper.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    /// Counts one webhook answered with `outcome` for `provider`.
    pub fn count_webhook(&self, provider: &str, outcome: &'static str) {
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        *c.webhooks
            .entry((provider.to_owned(), outcome))
            .or_default() += 1;
    }

    /// Records one send's duration on `channel` and whether it succeeded.
    pub fn observe_send(&self, channel: Channel, elapsed: Duration, ok: bool) {
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        c.sends
            .entry((channel, ok))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// The whole exposition: this process's counters, then the database's counts.
    ///
    /// # Errors
    /// The database could not be read.
    pub async fn render(&self, pool: &PgPool) -> Result<String, sqlx::Error> {
        let outbox: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, status, count(*) FROM outbox_messages GROUP BY channel, status",
        )
        .fetch_all(pool)
        .await?;
        let jobs: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status")
                .fetch_all(pool)
                .await?;
        let counters = {
            let c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            (c.webhooks.clone(), c.sends.clone())
        };
        Ok(exposition(&counters.0, &counters.1, &outbox, &jobs))
    }
}

/// Accepted (handled or duplicate) versus rejected.
fn accepted(outcome: &str) -> bool {
    matches!(outcome, "accepted" | "duplicate" | "challenge")
}

fn exposition(
    webhooks: &BTreeMap<(String, &'static str), u64>,
    sends: &BTreeMap<(Channel, bool), Histogram>,
    outbox: &[(String, String, i64)],
    jobs: &[(String, i64)],
) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(
        "# HELP crm_outbox_messages Outbox messages by channel and status (shared database)."
            .into(),
    );
    line("# TYPE crm_outbox_messages gauge".into());
    // The four statuses the dashboards need appear even at zero.
    let mut by_status: BTreeMap<(String, String), i64> = BTreeMap::new();
    let channels: std::collections::BTreeSet<&str> =
        outbox.iter().map(|(c, _, _)| c.as_str()).collect();
    for channel in channels {
        for status in ["pending", "sent", "failed", "dead_lettered"] {
            by_status.insert((channel.to_owned(), status.to_owned()), 0);
        }
    }
    for (channel, status, n) in outbox {
        by_status.insert((channel.clone(), status.clone()), *n);
    }
    for ((channel, status), n) in &by_status {
        line(format!(
            "crm_outbox_messages{{channel=\"{channel}\",status=\"{status}\"}} {n}"
        ));
    }
    line("# HELP crm_jobs Jobs by status (shared database).".into());
    line("# TYPE crm_jobs gauge".into());
    let mut job_counts: BTreeMap<&str, i64> = [("queued", 0), ("dead", 0)].into();
    for (status, n) in jobs {
        job_counts.insert(status.as_str(), *n);
    }
    for (status, n) in job_counts {
        line(format!("crm_jobs{{status=\"{status}\"}} {n}"));
    }
    line("# HELP crm_webhooks_total Webhook requests answered by this process, by provider and outcome.".into());
    line("# TYPE crm_webhooks_total counter".into());
    for ((provider, outcome), n) in webhooks {
        let result = if accepted(outcome) {
            "accepted"
        } else {
            "rejected"
        };
        line(format!(
            "crm_webhooks_total{{provider=\"{provider}\",result=\"{result}\",outcome=\"{outcome}\"}} {n}"
        ));
    }
    line("# HELP crm_send_duration_seconds Adapter send latency in this process, by channel and result.".into());
    line("# TYPE crm_send_duration_seconds histogram".into());
    for ((channel, ok), h) in sends {
        let labels = format!(
            "channel=\"{channel}\",result=\"{}\"",
            if *ok { "ok" } else { "error" }
        );
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
            line(format!(
                "crm_send_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
            ));
        }
        line(format!(
            "crm_send_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            h.count
        ));
        line(format!(
            "crm_send_duration_seconds_sum{{{labels}}} {}",
            h.sum
        ));
        line(format!(
            "crm_send_duration_seconds_count{{{labels}}} {}",
            h.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_series() {
        let metrics = Metrics::default();
        metrics.count_webhook("resend", "accepted");
        metrics.count_webhook("resend", "bad_signature");
        metrics.observe_send(Channel::Email, Duration::from_millis(20), true);
        let c = metrics.counters.lock().unwrap();
        let text = exposition(
            &c.webhooks,
            &c.sends,
            &[("email".into(), "sent".into(), 3)],
            &[("queued".into(), 2)],
        );
        assert!(text.contains("crm_outbox_messages{channel=\"email\",status=\"sent\"} 3"));
        assert!(text.contains("crm_outbox_messages{channel=\"email\",status=\"dead_lettered\"} 0"));
        assert!(text.contains("crm_jobs{status=\"queued\"} 2"));
        assert!(text.contains("crm_jobs{status=\"dead\"} 0"));
        assert!(text.contains(
            "crm_webhooks_total{provider=\"resend\",result=\"rejected\",outcome=\"bad_signature\"} 1"
        ));
        assert!(text.contains(
            "crm_send_duration_seconds_bucket{channel=\"email\",result=\"ok\",le=\"0.025\"} 1"
        ));
        assert!(text.contains(
            "crm_send_duration_seconds_bucket{channel=\"email\",result=\"ok\",le=\"0.01\"} 0"
        ));
        assert!(
            text.contains("crm_send_duration_seconds_count{channel=\"email\",result=\"ok\"} 1")
        );
    }
}
