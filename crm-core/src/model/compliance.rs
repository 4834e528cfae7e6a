//! Consent ledger and suppression list.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ValidationError, require_non_blank};
use crate::ids::{ConsentId, ContactId, SuppressionId, WorkspaceId};
use crate::model::Channel;
use crate::text_enum::text_enum;

text_enum! {
    /// Whether the contact agreed to be contacted on a channel.
    pub enum ConsentStatus {
        /// Consent given.
        Granted = "granted",
        /// Consent withdrawn (unsubscribe, request).
        Withdrawn = "withdrawn",
    }
}

/// One entry of the append-only consent ledger; the latest entry per contact and
/// channel is in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    /// Id.
    pub id: ConsentId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The contact, in the same workspace.
    pub contact_id: ContactId,
    /// The channel the consent is about.
    pub channel: Channel,
    /// Granted or withdrawn.
    pub status: ConsentStatus,
    /// Where it came from ("web form", "unsubscribe link", ...).
    pub source: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl Consent {
    /// A new ledger entry.
    pub fn new(
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        channel: Channel,
        status: ConsentStatus,
        source: impl Into<String>,
        recorded_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let consent = Self {
            id: ConsentId::new(),
            workspace_id,
            contact_id,
            channel,
            status,
            source: source.into(),
            recorded_at,
        };
        require_non_blank("consent.source", &consent.source)?;
        Ok(consent)
    }
}

text_enum! {
    /// Why an address is suppressed.
    #[non_exhaustive]
    pub enum SuppressionReason {
        /// A hard bounce.
        Bounced = "bounced",
        /// The recipient unsubscribed.
        Unsubscribed = "unsubscribed",
        /// The recipient marked a message as spam.
        Complained = "complained",
        /// The provider rejected the address as invalid.
        InvalidRecipient = "invalid_recipient",
        /// A person added it by hand.
        Manual = "manual",
    }
}

/// Normalises an address for suppression matching: trimmed and lower-cased, with
/// spaces, dashes and brackets removed from phone numbers.
#[must_use]
pub fn normalize_address(address: &str) -> String {
    let trimmed = address.trim();
    if trimmed.starts_with('+') {
        trimmed
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect()
    } else {
        trimmed.to_lowercase()
    }
}

/// An address that must not be contacted, on one channel or on all.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// Id.
    pub id: SuppressionId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The channel, or `None` for every channel.
    pub channel: Option<Channel>,
    /// The normalised address (see [`normalize_address`]).
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl Suppression {
    /// A new suppression for `address`, normalised.
    pub fn new(
        workspace_id: WorkspaceId,
        channel: Option<Channel>,
        address: &str,
        reason: SuppressionReason,
        created_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let address = normalize_address(address);
        require_non_blank("suppression.address", &address)?;
        Ok(Self {
            id: SuppressionId::new(),
            workspace_id,
            channel,
            address,
            reason,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_for_matching() {
        assert_eq!(normalize_address("  Ada@Example.COM "), "ada@example.com");
        assert_eq!(normalize_address("+49 (151) 123-45"), "+4915112345");
        assert!(
            Suppression::new(
                WorkspaceId::new(),
                None,
                "  ",
                SuppressionReason::Manual,
                DateTime::UNIX_EPOCH
            )
            .is_err()
        );
    }
}
