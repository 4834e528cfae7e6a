//! Consent ledger and suppression list.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ConsentId, ContactId, SuppressionId, WorkspaceId};
use crate::model::Channel;
use crate::model::rules::{require_text, stored_time};
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
            recorded_at: stored_time(recorded_at),
        };
        consent.validate()?;
        Ok(consent)
    }

    /// The source must not be blank or hold NUL. Stores call this on every write.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("consent.source", &self.source)
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

/// Normalises an address for suppression matching: an email address to its identity
/// key ([`normalize_email`](crate::address::normalize_email)), a phone number with
/// spaces, dashes and brackets removed, anything else trimmed and lower-cased.
#[must_use]
pub fn normalize_address(address: &str) -> String {
    let trimmed = address.trim();
    if trimmed.starts_with('+') {
        trimmed
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect()
    } else {
        crate::address::normalize_email(trimmed)
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
        let suppression = Self {
            id: SuppressionId::new(),
            workspace_id,
            channel,
            address: normalize_address(address),
            reason,
            created_at: stored_time(created_at),
        };
        suppression.validate()?;
        Ok(suppression)
    }

    /// The address must not be blank or hold NUL. Stores call this on every write, and
    /// store the address normalised with [`normalize_address`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("suppression.address", &self.address)
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
