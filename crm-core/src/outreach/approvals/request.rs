//! What the approval policy is asked about a message: the metadata keys a step's
//! message carries for approval, read leniently.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::approval::ApprovalRequest;
use crate::model::OutboxMessage;

/// Metadata key: a boolean, whether the step demands a human regardless of rules.
pub const META_REQUIRES_APPROVAL: &str = "requires_approval";
/// Metadata key: a number from 0.0 to 1.0, the drafting confidence.
pub const META_CONFIDENCE: &str = "confidence";
/// Metadata key: a string, the template identity for streak rules.
pub const META_TEMPLATE_KEY: &str = "template_key";
/// Metadata key: any JSON, shown to the approver as the item's context.
pub const META_CONTEXT: &str = "context";

/// A confidence from metadata: a finite number from 0.0 to 1.0, else `None`.
#[must_use]
pub fn confidence_of(message: &OutboxMessage) -> Option<f64> {
    message
        .metadata
        .get(META_CONFIDENCE)
        .and_then(Value::as_f64)
        .filter(|c| (0.0..=1.0).contains(c))
}

/// The template key from metadata, if it is a non-blank string.
#[must_use]
pub fn template_key_of(message: &OutboxMessage) -> Option<String> {
    message
        .metadata
        .get(META_TEMPLATE_KEY)
        .and_then(Value::as_str)
        .filter(|k| !k.trim().is_empty())
        .map(str::to_owned)
}

/// The approver's context from metadata (`Null` when absent).
#[must_use]
pub fn context_of(message: &OutboxMessage) -> Value {
    message
        .metadata
        .get(META_CONTEXT)
        .cloned()
        .unwrap_or(Value::Null)
}

/// What the approval policy is asked about `message` at `now`; anything missing or
/// malformed in the metadata reads as absent (or `false`).
#[must_use]
pub fn approval_request(message: &OutboxMessage, now: DateTime<Utc>) -> ApprovalRequest {
    ApprovalRequest {
        step_requires_approval: message
            .metadata
            .get(META_REQUIRES_APPROVAL)
            .and_then(Value::as_bool)
            .unwrap_or(false),
        confidence: confidence_of(message),
        template_key: template_key_of(message),
        message: message.clone(),
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::model::Channel;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    #[test]
    fn approval_requests_read_the_metadata_leniently() {
        let message = OutboxMessage::new(
            WorkspaceId::new(),
            Channel::Email,
            "a@b.c",
            "Hi",
            "k",
            now(),
        )
        .unwrap()
        .with_metadata(
            json!({ "requires_approval": true, "confidence": 0.8, "template_key": "intro" }),
        );
        let request = approval_request(&message, now());
        assert!(request.step_requires_approval);
        assert_eq!(request.confidence, Some(0.8));
        assert_eq!(request.template_key.as_deref(), Some("intro"));
        let odd = message.with_metadata(json!({ "requires_approval": "yes", "confidence": 3 }));
        let request = approval_request(&odd, now());
        assert!(!request.step_requires_approval);
        assert_eq!(request.confidence, None);
        assert_eq!(request.template_key, None);
    }
}
