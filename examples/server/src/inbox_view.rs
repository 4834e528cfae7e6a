//! [`InboxEntry`]: an approval item as people see it (JSON API and page alike): the
//! recipient masked, the text that would be sent, the confidence and the age.

use chrono::{DateTime, Utc};
use crm_core::ids::{ApprovalItemId, WorkspaceId};
use crm_core::model::ApprovalItem;
use crm_core::store::OutboxStore;
use serde::Serialize;

/// One approval item for display.
#[derive(Debug, Clone, Serialize)]
pub struct InboxEntry {
    /// The item id.
    pub id: ApprovalItemId,
    /// `pending`, `approved`, `rejected`, `expired` or `withdrawn`.
    pub status: String,
    /// The channel (`email`, `whatsapp`, ...).
    pub channel: String,
    /// The recipient, masked (`a***@example.com`, `+***78`).
    pub recipient: String,
    /// The subject, for channels that have one.
    pub subject: Option<String>,
    /// The text that is (or would be) sent: the edit when there is one.
    pub body: String,
    /// The text as drafted.
    pub original_body: String,
    /// The approver's edit, if any.
    pub edited_body: Option<String>,
    /// How sure the drafting side is, 0 to 1.
    pub confidence: Option<f64>,
    /// Why a person is needed, or why it was rejected.
    pub reason: Option<String>,
    /// When the item was created.
    pub created_at: DateTime<Utc>,
    /// Its age in seconds at the time of the answer.
    pub age_seconds: i64,
    /// When it expires if still pending.
    pub expires_at: DateTime<Utc>,
    /// When it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who decided (a user id), if a person did.
    pub decided_by: Option<String>,
}

impl InboxEntry {
    /// The item with its message's recipient and subject (read from the outbox; a
    /// message that cannot be read shows `[unavailable]`).
    pub async fn load(
        outbox: &dyn OutboxStore,
        workspace_id: WorkspaceId,
        item: ApprovalItem,
        now: DateTime<Utc>,
    ) -> Self {
        let message = outbox.get_outbox(workspace_id, item.outbox_message_id).await;
        let (recipient, subject) = match message {
            Ok(m) => (mask_address(&m.recipient), m.subject),
            Err(e) => {
                tracing::warn!(item = %item.id, error = %e, "approval item's message unreadable");
                ("[unavailable]".to_owned(), None)
            }
        };
        Self {
            id: item.id,
            status: item.status.as_str().to_owned(),
            channel: item.channel.as_str().to_owned(),
            recipient,
            subject,
            body: item.body_to_send().to_owned(),
            age_seconds: (now - item.created_at).num_seconds().max(0),
            original_body: item.original_body,
            edited_body: item.edited_body,
            confidence: item.confidence,
            reason: item.reason,
            created_at: item.created_at,
            expires_at: item.expires_at,
            decided_at: item.decided_at,
            decided_by: item.decided_by.map(|u| u.to_string()),
        }
    }

    /// Loads every item of `items`, in order.
    pub async fn load_all(
        outbox: &dyn OutboxStore,
        workspace_id: WorkspaceId,
        items: Vec<ApprovalItem>,
        now: DateTime<Utc>,
    ) -> Vec<Self> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(Self::load(outbox, workspace_id, item, now).await);
        }
        out
    }

    /// The confidence as a percentage, or `-`.
    #[must_use]
    pub fn confidence_text(&self) -> String {
        self.confidence
            .map_or_else(|| "-".to_owned(), |c| format!("{:.0}%", c * 100.0))
    }

    /// The age in words: `42s`, `5m`, `3h`, `2d`.
    #[must_use]
    pub fn age_text(&self) -> String {
        let s = self.age_seconds;
        match s {
            ..60 => format!("{s}s"),
            60..3600 => format!("{}m", s / 60),
            3600..86_400 => format!("{}h", s / 3600),
            _ => format!("{}d", s / 86_400),
        }
    }
}

/// An address for display: the first character and the domain of an email
/// (`a***@example.com`), the last two digits of a phone (`+***78`), `***` otherwise.
#[must_use]
pub fn mask_address(address: &str) -> String {
    let address = address.trim();
    if let Some((local, domain)) = address.rsplit_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let number = address.strip_prefix("whatsapp:").unwrap_or(address);
    if let Some(digits) = number.strip_prefix('+')
        && digits.len() > 2
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return format!("+***{}", &digits[digits.len() - 2..]);
    }
    "***".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask_address("ada@example.com"), "a***@example.com");
        assert_eq!(mask_address("+4915112345678"), "+***78");
        assert_eq!(mask_address("whatsapp:+4915112345678"), "+***78");
        assert_eq!(mask_address("17841400000000"), "***");
    }
}
