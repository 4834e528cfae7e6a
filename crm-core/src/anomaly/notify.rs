//! Telling a person that an anomaly was raised: [`LogAnomalyNotifier`] (the default)
//! and [`RecordingAnomalyNotifier`] (for tests).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::approval::AnomalyNotifier;
use crate::channel::ChannelError;
use crate::model::Anomaly;

/// An [`AnomalyNotifier`] that writes each raised anomaly to `tracing` at `WARN`: its
/// id, workspace, rule key, severity and summary (counts and rates only).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAnomalyNotifier;

#[async_trait]
impl AnomalyNotifier for LogAnomalyNotifier {
    async fn anomaly_raised(&self, anomaly: &Anomaly) -> Result<(), ChannelError> {
        tracing::warn!(
            anomaly = %anomaly.id,
            workspace = %anomaly.workspace_id,
            rule = %anomaly.dedup_key,
            severity = %anomaly.severity,
            summary = %anomaly.summary,
            "anomaly needs attention"
        );
        Ok(())
    }
}

/// An [`AnomalyNotifier`] for tests that records the anomalies it was told about.
/// [`RecordingAnomalyNotifier::failing`] records too, then fails every call. Clones
/// share one record.
#[derive(Debug, Clone, Default)]
pub struct RecordingAnomalyNotifier {
    seen: Arc<Mutex<Vec<Anomaly>>>,
    fail: bool,
}

impl RecordingAnomalyNotifier {
    /// A notifier that accepts every anomaly.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A notifier whose every call fails with a permanent error.
    #[must_use]
    pub fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }

    /// The anomalies announced so far, in call order.
    #[must_use]
    pub fn notified(&self) -> Vec<Anomaly> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl AnomalyNotifier for RecordingAnomalyNotifier {
    async fn anomaly_raised(&self, anomaly: &Anomaly) -> Result<(), ChannelError> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(anomaly.clone());
        if self.fail {
            return Err(ChannelError::Permanent {
                provider: "recording",
                reason: "this notifier fails on purpose".to_owned(),
            });
        }
        Ok(())
    }
}
