//! Helpers shared by the adapter tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code, unreachable_pub)]

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_channels::http::{HttpConfig, TransportError, TransportErrorKind};
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::{Activity, Channel};
use crm_core::store::{ActivityFilter, ActivityStore};
use crm_core::{ChannelError, ManualClock, OutboundMessage, StoreError};

/// The fixed "now" of every test.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(now()))
}

pub fn message(channel: Channel, recipient: &str) -> OutboundMessage {
    OutboundMessage {
        id: OutboxMessageId::new(),
        workspace_id: WorkspaceId::new(),
        channel,
        recipient: recipient.to_owned(),
        contact_id: None,
        subject: Some("Quick question".to_owned()),
        body: "Hi Ada, do you have 15 minutes this week?".to_owned(),
        metadata: serde_json::json!({}),
    }
}

/// An `HttpConfig` for a wiremock server with a short timeout.
pub fn http_config(base: &str) -> HttpConfig {
    HttpConfig::new(base)
        .unwrap()
        .with_timeout(Duration::from_millis(500))
}

/// A base URL on loopback where nothing listens.
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The transport error kind inside a retryable channel error.
pub fn transport_kind(error: &ChannelError) -> Option<TransportErrorKind> {
    error
        .source()
        .and_then(|s| s.downcast_ref::<TransportError>())
        .map(TransportError::kind)
}

/// Every message in the error's source chain, joined.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(" <- ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Records activities; a reused id is a conflict, as the store contract says.
#[derive(Debug, Default)]
pub struct RecordingActivities {
    pub rows: Mutex<Vec<Activity>>,
    pub unavailable: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("database is down")]
struct Down;

#[async_trait]
impl ActivityStore for RecordingActivities {
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError> {
        if self.unavailable {
            return Err(StoreError::Unavailable {
                backend: "test",
                source: Box::new(Down),
            });
        }
        let mut rows = self.rows.lock().unwrap();
        if rows.iter().any(|a| a.id == activity.id) {
            return Err(StoreError::conflict("activity", "id exists"));
        }
        rows.push(activity.clone());
        Ok(activity.clone())
    }

    async fn list_activities(
        &self,
        _workspace_id: WorkspaceId,
        _filter: &ActivityFilter,
        _limit: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        Ok(self.rows.lock().unwrap().clone())
    }

    async fn count_activities(
        &self,
        _workspace_id: WorkspaceId,
        _filter: &ActivityFilter,
    ) -> Result<u64, StoreError> {
        Ok(self.rows.lock().unwrap().len() as u64)
    }
}
