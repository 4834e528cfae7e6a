//! Hand-written `Debug` for the model types that hold personal data.
//!
//! Names, addresses, message bodies, free-text summaries and raw rows are masked (see
//! [`crate::redact`]); ids, statuses, channels, counters and times stay visible, so a
//! logged value still says which row it is and where it stands.

use std::fmt;

use super::{
    Activity, ApprovalItem, Contact, IntakeRecord, NewContact, OutboxMessage, Suppression,
};
use crate::redact::{
    Masked, MaskedAddress, MaskedJson, masked_address_opt, masked_opt, masked_values,
};

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("first_name", &Masked(&self.first_name))
            .field("last_name", &Masked(&self.last_name))
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("title", &self.title)
            .field("account_id", &self.account_id)
            .field("time_zone", &self.time_zone)
            .field("linkedin_url", &masked_opt(self.linkedin_url.as_deref()))
            .field("instagram_id", &masked_opt(self.instagram_id.as_deref()))
            .field("custom_fields", &masked_values(self.custom_fields.iter()))
            .field("owner_id", &self.owner_id)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .finish()
    }
}

impl fmt::Debug for NewContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewContact")
            .field("first_name", &Masked(&self.first_name))
            .field("last_name", &Masked(&self.last_name))
            .field("email", &masked_address_opt(self.email.as_deref()))
            .field("phone", &masked_address_opt(self.phone.as_deref()))
            .field("title", &self.title)
            .field("account_id", &self.account_id)
            .field("time_zone", &self.time_zone)
            .field("linkedin_url", &masked_opt(self.linkedin_url.as_deref()))
            .field("instagram_id", &masked_opt(self.instagram_id.as_deref()))
            .field("custom_fields", &masked_values(self.custom_fields.iter()))
            .field("owner_id", &self.owner_id)
            .finish()
    }
}

impl fmt::Debug for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activity")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("contact_id", &self.contact_id)
            .field("deal_id", &self.deal_id)
            .field("kind", &self.kind)
            .field("channel", &self.channel)
            .field("outbox_message_id", &self.outbox_message_id)
            .field("summary", &Masked(&self.summary))
            .field("details", &MaskedJson(&self.details))
            .field("occurred_at", &self.occurred_at)
            .finish()
    }
}

impl fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("channel", &self.channel)
            .field("recipient", &MaskedAddress(&self.recipient))
            .field("contact_id", &self.contact_id)
            .field("enrollment_id", &self.enrollment_id)
            .field("step_index", &self.step_index)
            .field("subject", &masked_opt(self.subject.as_deref()))
            .field("body", &Masked(&self.body))
            .field("idempotency_key", &self.idempotency_key)
            .field("status", &self.status)
            .field("not_before", &self.not_before)
            .field("attempts", &self.attempts)
            .field("lease", &self.lease)
            .field("provider_message_id", &self.provider_message_id)
            .field("last_error", &self.last_error)
            .field("metadata", &MaskedJson(&self.metadata))
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("sent_at", &self.sent_at)
            .field("version", &self.version)
            .finish()
    }
}

impl fmt::Debug for ApprovalItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalItem")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("outbox_message_id", &self.outbox_message_id)
            .field("channel", &self.channel)
            .field("status", &self.status)
            .field("confidence", &self.confidence)
            .field("template_key", &self.template_key)
            .field("step_index", &self.step_index)
            .field("original_body", &Masked(&self.original_body))
            .field("edited_body", &masked_opt(self.edited_body.as_deref()))
            .field("context", &MaskedJson(&self.context))
            .field("reason", &self.reason)
            .field("decided_by", &self.decided_by)
            .field("decided_by_rule", &self.decided_by_rule)
            .field("decided_at", &self.decided_at)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .finish()
    }
}

impl fmt::Debug for IntakeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeRecord")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("source", &self.source)
            .field("source_ref", &self.source_ref)
            .field("line", &self.line)
            .field("raw", &MaskedJson(&self.raw))
            .field("fingerprint", &self.fingerprint)
            .field("status", &self.status)
            .field("duplicate_of", &self.duplicate_of)
            .field("errors", &self.errors)
            .field("contact_id", &self.contact_id)
            .field("received_at", &self.received_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .finish()
    }
}

impl fmt::Debug for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suppression")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("channel", &self.channel)
            .field("address", &MaskedAddress(&self.address))
            .field("reason", &self.reason)
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::ids::{ContactId, OutboxMessageId, WorkspaceId};
    use crate::model::{ActivityKind, Channel, IntakeSource, SuppressionReason};

    const EMAIL: &str = "jane.roe@example.com";
    const PHONE: &str = "+4915112345678";
    const BODY: &str = "Dear Jane, your secret offer";

    fn now() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    /// `debug` shows none of `secrets` and every one of `visible`.
    fn assert_masked(debug: &str, secrets: &[&str], visible: &[String]) {
        for secret in secrets {
            assert!(!debug.contains(secret), "{secret:?} leaks in {debug}");
        }
        for shown in visible {
            assert!(
                debug.contains(shown.as_str()),
                "{shown:?} missing in {debug}"
            );
        }
    }

    fn new_contact() -> NewContact {
        NewContact {
            first_name: "Janet".into(),
            last_name: "Roeberts".into(),
            email: Some(EMAIL.into()),
            phone: Some(PHONE.into()),
            linkedin_url: Some("https://www.linkedin.com/in/janetroe".into()),
            instagram_id: Some("IGSID-778899".into()),
            custom_fields: [("home_city".to_owned(), "Springfield".to_owned())].into(),
            ..NewContact::default()
        }
    }

    const CONTACT_SECRETS: &[&str] = &[
        "Janet",
        "Roeberts",
        "jane.roe",
        "151123",
        "janetroe",
        "778899",
        "Springfield",
    ];

    #[test]
    fn contacts_hide_names_and_addresses() {
        let input = new_contact();
        assert_masked(
            &format!("{input:?}"),
            CONTACT_SECRETS,
            &["home_city".into()],
        );
        let contact = Contact::create(WorkspaceId::new(), input, now()).unwrap();
        assert_masked(
            &format!("{contact:?}"),
            CONTACT_SECRETS,
            &[
                contact.id.to_string(),
                "example.com".into(),
                "home_city".into(),
            ],
        );
    }

    #[test]
    fn outbox_messages_hide_recipient_subject_body_and_metadata() {
        let message = OutboxMessage::new(
            WorkspaceId::new(),
            Channel::Email,
            EMAIL,
            BODY,
            "k-1",
            now(),
        )
        .unwrap()
        .with_subject("Jane, about your loan")
        .with_metadata(json!({"to_name": "Janet Roeberts"}));
        assert_masked(
            &format!("{message:?}"),
            &["jane.roe", "secret offer", "your loan", "Roeberts"],
            &[message.id.to_string(), "Pending".into(), "k-1".into()],
        );
    }

    #[test]
    fn activities_hide_summary_and_details() {
        let activity = Activity::for_contact(
            WorkspaceId::new(),
            ContactId::new(),
            ActivityKind::ReplyReceived,
            "Jane wrote: call me on +4915112345678",
            now(),
        )
        .unwrap()
        .with_details(json!({"text": BODY}));
        assert_masked(
            &format!("{activity:?}"),
            &["Jane", "151123", "secret offer"],
            &[activity.id.to_string(), "ReplyReceived".into()],
        );
    }

    #[test]
    fn approval_items_hide_bodies_and_context() {
        let mut item = ApprovalItem::pending(
            WorkspaceId::new(),
            OutboxMessageId::new(),
            Channel::Sms,
            BODY,
            now(),
            now(),
        )
        .unwrap();
        item.edited_body = Some("Dear Janet, edited".into());
        item.context = json!({"contact": {"email": EMAIL}});
        assert_masked(
            &format!("{item:?}"),
            &["secret offer", "Janet", "jane.roe"],
            &[item.id.to_string(), item.outbox_message_id.to_string()],
        );
    }

    #[test]
    fn intake_records_hide_the_raw_row() {
        let record = IntakeRecord::new(
            WorkspaceId::new(),
            IntakeSource::Csv,
            "leads.csv",
            json!({"email": EMAIL, "name": "Janet Roeberts"}),
            None,
            now(),
        )
        .unwrap();
        assert_masked(
            &format!("{record:?}"),
            &["jane.roe", "Roeberts"],
            &[record.id.to_string(), "leads.csv".into()],
        );
    }

    #[test]
    fn suppressions_hide_the_address() {
        let suppression = Suppression::new(
            WorkspaceId::new(),
            Some(Channel::Sms),
            PHONE,
            SuppressionReason::Bounced,
            now(),
        )
        .unwrap();
        assert_masked(
            &format!("{suppression:?}"),
            &["151123"],
            &["+***78".into(), "Bounced".into()],
        );
    }
}
