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

/// Records activities; a reused id is a conflict, as the store contract says. Lists
/// honour the workspace, contact, kinds, channel, `until` and limit, newest first.
#[derive(Debug, Default)]
pub struct RecordingActivities {
    pub rows: Mutex<Vec<Activity>>,
    /// Every call fails as `Unavailable`.
    pub unavailable: bool,
    /// Recording always reports `Conflict`, whatever the id.
    pub always_conflict: bool,
    /// Listing fails as `Unavailable`.
    pub list_unavailable: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("database is down")]
struct Down;

fn down() -> StoreError {
    StoreError::Unavailable {
        backend: "test",
        source: Box::new(Down),
    }
}

impl RecordingActivities {
    fn matching(&self, workspace_id: WorkspaceId, filter: &ActivityFilter) -> Vec<Activity> {
        let mut rows: Vec<Activity> = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.workspace_id == workspace_id)
            .filter(|a| filter.contact_id.is_none() || a.contact_id == filter.contact_id)
            .filter(|a| filter.deal_id.is_none() || a.deal_id == filter.deal_id)
            .filter(|a| filter.kinds.is_empty() || filter.kinds.contains(&a.kind))
            .filter(|a| filter.channel.is_none() || a.channel == filter.channel)
            .filter(|a| filter.since.is_none_or(|t| a.occurred_at >= t))
            .filter(|a| filter.until.is_none_or(|t| a.occurred_at < t))
            .cloned()
            .collect();
        rows.sort_by_key(|a| std::cmp::Reverse((a.occurred_at, a.id)));
        rows
    }
}

#[async_trait]
impl ActivityStore for RecordingActivities {
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError> {
        if self.unavailable {
            return Err(down());
        }
        let mut rows = self.rows.lock().unwrap();
        if self.always_conflict || rows.iter().any(|a| a.id == activity.id) {
            return Err(StoreError::conflict("activity", "id exists"));
        }
        rows.push(activity.clone());
        Ok(activity.clone())
    }

    async fn list_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
        limit: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        if self.unavailable || self.list_unavailable {
            return Err(down());
        }
        let mut rows = self.matching(workspace_id, filter);
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn count_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
    ) -> Result<u64, StoreError> {
        if self.unavailable || self.list_unavailable {
            return Err(down());
        }
        Ok(self.matching(workspace_id, filter).len() as u64)
    }
}
