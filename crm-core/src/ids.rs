//! Typed identifiers.
//!
//! Every entity has its own id type so that a `ContactId` can never be passed where a
//! `DealId` is expected. Ids are UUID v7: time-ordered, so keyset pagination by id
//! returns rows roughly in creation order and B-tree inserts stay local.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $entity:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// The entity name used in errors and logs.
            pub const ENTITY: &'static str = $entity;

            /// A fresh time-ordered (UUID v7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID, for example one read back from a database.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| ValidationError::new($entity, "is not a valid UUID"))
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

define_id!(
    /// A tenant. Every entity belongs to exactly one workspace and no store call ever
    /// reads or writes across workspaces.
    WorkspaceId,
    "workspace"
);
define_id!(
    /// A person the workspace may reach out to.
    ContactId,
    "contact"
);
define_id!(
    /// A company (organisation) that contacts belong to.
    AccountId,
    "account"
);
define_id!(
    /// A sales opportunity on a pipeline.
    DealId,
    "deal"
);
define_id!(
    /// A sales pipeline: an ordered list of stages.
    PipelineId,
    "pipeline"
);
define_id!(
    /// One stage of a pipeline.
    StageId,
    "stage"
);
define_id!(
    /// Something that happened with a contact or deal (a send, a reply, a note).
    ActivityId,
    "activity"
);
define_id!(
    /// A consent ledger entry.
    ConsentId,
    "consent"
);
define_id!(
    /// A suppression-list entry.
    SuppressionId,
    "suppression"
);
define_id!(
    /// An immutable domain event.
    EventId,
    "event"
);
define_id!(
    /// A durable background job.
    JobId,
    "job"
);
define_id!(
    /// An outbound message waiting in, or sent from, the outbox. It doubles as the
    /// idempotency key handed to channel providers.
    OutboxMessageId,
    "outbox_message"
);
define_id!(
    /// An item in the human approval inbox.
    ApprovalItemId,
    "approval_item"
);
define_id!(
    /// A graduated auto-approval rule.
    ApprovalRuleId,
    "approval_rule"
);
define_id!(
    /// An outreach sequence definition.
    SequenceId,
    "sequence"
);
define_id!(
    /// One contact's run through one sequence.
    EnrollmentId,
    "enrollment"
);
define_id!(
    /// A raw row in the intake buffer.
    IntakeRecordId,
    "intake_record"
);
define_id!(
    /// A detected anomaly in recent activity.
    AnomalyId,
    "anomaly"
);
define_id!(
    /// An audit trail entry.
    AuditEntryId,
    "audit_entry"
);
define_id!(
    /// A human user of the host application (an approver, an owner).
    UserId,
    "user"
);

define_id!(
    /// An API key a host issued to a workspace (see `crate::access`).
    ApiKeyId,
    "api_key"
);

define_id!(
    /// One enrichment spend reservation; chosen by the caller (the enricher takes a
    /// fresh one per provider call).
    SpendReservationId,
    "spend_reservation"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings() {
        let id = ContactId::new();
        let parsed: ContactId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
    }

    #[test]
    fn malformed_id_is_a_validation_error() {
        let err = "not-a-uuid".parse::<DealId>().unwrap_err();
        assert_eq!(err.field(), "deal");
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
    }
}
