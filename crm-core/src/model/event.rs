//! Immutable domain events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{EventId, WorkspaceId};
use crate::model::rules::{no_nul, no_nul_json, require_text, stored_time};

/// An event to append. The idempotency key makes the append safe to retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Id.
    pub id: EventId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Dotted kind, e.g. `"contact.created"`.
    pub kind: String,
    /// The id of the entity the event is about, as text.
    pub subject: String,
    /// Event data.
    pub payload: serde_json::Value,
    /// Unique per workspace; appending the same key twice yields the first event.
    pub idempotency_key: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// A new event; `kind` and `idempotency_key` must not be blank.
    pub fn new(
        workspace_id: WorkspaceId,
        kind: impl Into<String>,
        subject: impl Into<String>,
        payload: serde_json::Value,
        idempotency_key: impl Into<String>,
        occurred_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let event = Self {
            id: EventId::new(),
            workspace_id,
            kind: kind.into(),
            subject: subject.into(),
            payload,
            idempotency_key: idempotency_key.into(),
            occurred_at: stored_time(occurred_at),
        };
        event.validate()?;
        Ok(event)
    }

    /// Kind and idempotency key must not be blank; no text holds NUL.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("event.kind", &self.kind)?;
        require_text("event.idempotency_key", &self.idempotency_key)?;
        no_nul("event.subject", &self.subject)?;
        no_nul_json("event.payload", &self.payload)
    }
}

/// A stored event. `position` is assigned by the store on append and strictly
/// increases in append order within a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Store-assigned position, starting at 1.
    pub position: i64,
    /// Id.
    pub id: EventId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Dotted kind.
    pub kind: String,
    /// Subject id.
    pub subject: String,
    /// Event data.
    pub payload: serde_json::Value,
    /// Idempotency key.
    pub idempotency_key: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

impl Event {
    /// The stored form of `new` at `position`.
    #[must_use]
    pub fn from_new(new: NewEvent, position: i64) -> Self {
        let NewEvent {
            id,
            workspace_id,
            kind,
            subject,
            payload,
            idempotency_key,
            occurred_at,
        } = new;
        Self {
            position,
            id,
            workspace_id,
            kind,
            subject,
            payload,
            idempotency_key,
            occurred_at,
        }
    }
}
