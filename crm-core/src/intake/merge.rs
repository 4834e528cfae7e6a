//! The merge preview, pure: which contact fields a row would set, and applying it.
//!
//! Policy: a row fills fields that are empty on the contact; it never overwrites a
//! value the contact already has. A differing value is reported as a conflict for a
//! human to decide, so a merge never loses data. Every applied change carries its
//! provenance (source, intake row, time).

use std::fmt;

use chrono::{DateTime, Utc};

use crate::address::{EmailAddress, PhoneNumber};
use crate::error::ValidationError;
use crate::ids::{AccountId, IntakeRecordId};
use crate::intake::normalize::NormalizedRow;
use crate::model::{Contact, FieldProvenance, IntakeRecord};

/// One field the merge would set, or would have set but for a conflict.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field name (`"email"`, `"account_id"`, `"custom.plan"`).
    pub field: String,
    /// The contact's value before, if any.
    pub before: Option<String>,
    /// The row's value.
    pub after: String,
}

// Values are contact data (PII): Debug shows field names only.
impl fmt::Debug for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldChange")
            .field("field", &self.field)
            .field("had_value", &self.before.is_some())
            .finish_non_exhaustive()
    }
}

/// What merging a row into a contact would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergePreview {
    /// Fields the merge sets (they were empty).
    pub changes: Vec<FieldChange>,
    /// Fields where the row disagrees with the contact; the contact's value is kept.
    pub conflicts: Vec<FieldChange>,
}

impl MergePreview {
    /// Whether applying changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Provenance rows for the applied changes, all from `record` at `now`.
    #[must_use]
    pub fn provenance(
        &self,
        contact: &Contact,
        record: &IntakeRecord,
        now: DateTime<Utc>,
    ) -> Vec<FieldProvenance> {
        self.changes
            .iter()
            .map(|c| FieldProvenance {
                workspace_id: contact.workspace_id,
                contact_id: contact.id,
                field: c.field.clone(),
                source: record.source,
                source_ref: record.source_ref.clone(),
                intake_id: record.id,
                recorded_at: now,
            })
            .collect()
    }
}

/// The row's values by contact field name, in a fixed order.
fn incoming(row: &NormalizedRow, account_id: Option<AccountId>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |field: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            out.push((field.to_owned(), v));
        }
    };
    push("first_name", row.first_name.clone());
    push("last_name", row.last_name.clone());
    push("email", row.email.as_ref().map(|e| e.as_str().to_owned()));
    push("phone", row.phone.as_ref().map(|p| p.as_str().to_owned()));
    push("title", row.title.clone());
    push("linkedin_url", row.linkedin_url.clone());
    push("account_id", account_id.map(|a| a.to_string()));
    for (name, value) in &row.custom {
        push(&format!("custom.{name}"), Some(value.clone()));
    }
    out
}

/// The contact's current value of `field`.
fn current(contact: &Contact, field: &str) -> Option<String> {
    let text = |s: &str| Some(s.to_owned()).filter(|s| !s.trim().is_empty());
    match field {
        "first_name" => text(&contact.first_name),
        "last_name" => text(&contact.last_name),
        "email" => contact.email.as_ref().map(|e| e.as_str().to_owned()),
        "phone" => contact.phone.as_ref().map(|p| p.as_str().to_owned()),
        "title" => contact.title.clone(),
        "linkedin_url" => contact.linkedin_url.clone(),
        "account_id" => contact.account_id.map(|a| a.to_string()),
        other => other
            .strip_prefix("custom.")
            .and_then(|k| contact.custom_fields.get(k).cloned()),
    }
}

/// Previews merging `row` (with the account its domain resolved to) into `contact`;
/// with `contact == None`, every incoming value is a change (a new contact).
#[must_use]
pub fn preview_merge(
    contact: Option<&Contact>,
    row: &NormalizedRow,
    account_id: Option<AccountId>,
) -> MergePreview {
    let mut preview = MergePreview::default();
    for (field, after) in incoming(row, account_id) {
        let before = contact.and_then(|c| current(c, &field));
        match &before {
            None => preview.changes.push(FieldChange {
                field,
                before,
                after,
            }),
            Some(old) if !same_value(&field, old, &after) => preview.conflicts.push(FieldChange {
                field,
                before,
                after,
            }),
            Some(_) => {}
        }
    }
    preview
}

fn same_value(field: &str, a: &str, b: &str) -> bool {
    match field {
        "email" | "linkedin_url" => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// Applies the preview's changes to `contact` (conflicts are not applied), setting
/// `updated_at`. Fails only if a value no longer parses (a preview built by hand).
pub fn apply_merge(
    mut contact: Contact,
    preview: &MergePreview,
    now: DateTime<Utc>,
) -> Result<Contact, ValidationError> {
    for change in &preview.changes {
        let v = change.after.clone();
        match change.field.as_str() {
            "first_name" => contact.first_name = v,
            "last_name" => contact.last_name = v,
            "email" => contact.email = Some(EmailAddress::parse(&v)?),
            "phone" => contact.phone = Some(PhoneNumber::parse(&v)?),
            "title" => contact.title = Some(v),
            "linkedin_url" => contact.linkedin_url = Some(v),
            "account_id" => {
                contact.account_id = Some(
                    v.parse()
                        .map_err(|_| ValidationError::new("account_id", "is not an id"))?,
                );
            }
            other => match other.strip_prefix("custom.") {
                Some(key) => {
                    contact.custom_fields.insert(key.to_owned(), v);
                }
                None => {
                    return Err(ValidationError::new("merge.field", "unknown contact field"));
                }
            },
        }
    }
    if !preview.changes.is_empty() {
        contact.updated_at = now;
    }
    contact.validate()?;
    Ok(contact)
}

/// The idempotency key of the event an intake row emits, whatever it became.
#[must_use]
pub fn event_key(intake_id: IntakeRecordId) -> String {
    format!("intake:{intake_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::intake::normalize::normalize_email;
    use crate::model::NewContact;
    use proptest::prelude::*;

    fn existing() -> Contact {
        Contact::create(
            WorkspaceId::new(),
            NewContact {
                first_name: "Ada".into(),
                email: Some("ada@acme.io".into()),
                title: Some("CTO".into()),
                ..Default::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn merge_fills_blanks_and_reports_conflicts() {
        let c = existing();
        let row = NormalizedRow {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email: Some(normalize_email("ADA@acme.io").unwrap()),
            title: Some("CEO".into()),
            ..Default::default()
        };
        let p = preview_merge(Some(&c), &row, None);
        let fields: Vec<_> = p.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["last_name"]);
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].field, "title");
        let merged = apply_merge(c, &p, DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(merged.last_name, "Lovelace");
        assert_eq!(
            merged.title.as_deref(),
            Some("CTO"),
            "a conflict keeps the old value"
        );
        assert!(
            !format!("{:?}", p.conflicts[0]).contains("CEO"),
            "Debug hides values"
        );
    }

    proptest! {
        #[test]
        fn merge_never_changes_a_value_the_contact_had(
            title in proptest::option::of("[a-zA-Z ]{1,12}"),
            first in proptest::option::of("[a-zA-Z]{1,12}"),
            custom in proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{1,4}", 0..4),
        ) {
            let c = existing();
            let row = NormalizedRow { first_name: first, title, custom, ..Default::default() };
            let p = preview_merge(Some(&c), &row, None);
            let merged = apply_merge(c.clone(), &p, DateTime::UNIX_EPOCH).unwrap();
            prop_assert_eq!(&merged.first_name, &c.first_name);
            prop_assert_eq!(&merged.title, &c.title);
            prop_assert_eq!(&merged.email, &c.email);
            // Applying the same row again changes nothing: merges are idempotent.
            let again = preview_merge(Some(&merged), &row, None);
            prop_assert!(again.is_empty());
        }
    }
}
