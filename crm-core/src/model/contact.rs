//! Contacts and accounts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::address::{Domain, EmailAddress, PhoneNumber};
use crate::error::ValidationError;
use crate::ids::{AccountId, ContactId, UserId, WorkspaceId};
use crate::model::rules::{
    MAX_DOMAIN_BYTES, MAX_EMAIL_BYTES, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_NOTE_BYTES,
    MAX_PHONE_BYTES, MAX_TITLE_BYTES, MAX_URL_BYTES, max_len, max_len_opt, no_nul_map,
    require_text_max, stored_time, text_opt,
};
use crate::money::Money;

/// A person the workspace may reach out to.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// Id.
    pub id: ContactId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Given name (may be empty when only an address is known).
    pub first_name: String,
    /// Family name (may be empty).
    pub last_name: String,
    /// Email address; unique per workspace (case-insensitively).
    pub email: Option<EmailAddress>,
    /// Phone in E.164, also used for WhatsApp and SMS.
    pub phone: Option<PhoneNumber>,
    /// Job title.
    pub title: Option<String>,
    /// The company the contact works for, in the same workspace.
    pub account_id: Option<AccountId>,
    /// IANA time zone for send windows; `None` falls back to the workspace default.
    #[serde(with = "super::time_zone_serde::option", default)]
    pub time_zone: Option<Tz>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
    /// Instagram-scoped user id (IGSID) for direct messages.
    pub instagram_id: Option<String>,
    /// Free-form fields available to templates as merge fields.
    pub custom_fields: BTreeMap<String, String>,
    /// The user who owns the relationship.
    pub owner_id: Option<UserId>,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version, starting at 1 and bumped by every update.
    pub version: i64,
}

/// Input for [`Contact::create`]: raw, unvalidated values as a host receives them.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, Default)]
pub struct NewContact {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email address, validated on create.
    pub email: Option<String>,
    /// Phone in E.164, validated on create.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Account in the same workspace.
    pub account_id: Option<AccountId>,
    /// IANA time zone name such as `"Europe/Berlin"`.
    pub time_zone: Option<String>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
    /// Instagram-scoped user id.
    pub instagram_id: Option<String>,
    /// Merge fields.
    pub custom_fields: BTreeMap<String, String>,
    /// Owner.
    pub owner_id: Option<UserId>,
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, ValidationError> {
    name.trim().parse::<Tz>().map_err(|_| {
        // Quote a bounded prefix: the input may be anything a caller was sent.
        const QUOTED_CHARS: usize = 64;
        let prefix: String = name.chars().take(QUOTED_CHARS).collect();
        let cut = if prefix.len() < name.len() { "..." } else { "" };
        ValidationError::new(
            "time_zone",
            format!("unknown IANA time zone {prefix:?}{cut}"),
        )
    })
}

impl Contact {
    /// Validates `input` and builds a version-1 contact with a fresh id.
    pub fn create(
        workspace_id: WorkspaceId,
        input: NewContact,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let contact = Self {
            id: ContactId::new(),
            workspace_id,
            first_name: input.first_name.trim().to_owned(),
            last_name: input.last_name.trim().to_owned(),
            email: input
                .email
                .as_deref()
                .map(EmailAddress::parse)
                .transpose()?,
            phone: input.phone.as_deref().map(PhoneNumber::parse).transpose()?,
            title: input.title,
            account_id: input.account_id,
            time_zone: input
                .time_zone
                .as_deref()
                .map(parse_time_zone)
                .transpose()?,
            linkedin_url: input.linkedin_url,
            instagram_id: input.instagram_id,
            custom_fields: input.custom_fields,
            owner_id: input.owner_id,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        contact.validate()?;
        Ok(contact)
    }

    /// Checks the rules a stored contact must keep: it is reachable or named, and
    /// custom field names are not blank. Stores call this on every write.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let named = !self.first_name.trim().is_empty() || !self.last_name.trim().is_empty();
        let reachable = self.email.is_some()
            || self.phone.is_some()
            || self
                .linkedin_url
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
            || self
                .instagram_id
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty());
        if !named && !reachable {
            return Err(ValidationError::new(
                "contact",
                "needs a name or at least one of email, phone, linkedin_url, instagram_id",
            ));
        }
        if self.custom_fields.keys().any(|k| k.trim().is_empty()) {
            return Err(ValidationError::new(
                "custom_fields",
                "field names must not be empty",
            ));
        }
        text_opt("contact.first_name", Some(&self.first_name), MAX_NAME_BYTES)?;
        text_opt("contact.last_name", Some(&self.last_name), MAX_NAME_BYTES)?;
        text_opt(
            "contact.email",
            self.email.as_ref().map(EmailAddress::as_str),
            MAX_EMAIL_BYTES,
        )?;
        max_len_opt(
            "contact.phone",
            self.phone.as_ref().map(PhoneNumber::as_str),
            MAX_PHONE_BYTES,
        )?;
        text_opt("contact.title", self.title.as_deref(), MAX_TITLE_BYTES)?;
        text_opt(
            "contact.linkedin_url",
            self.linkedin_url.as_deref(),
            MAX_URL_BYTES,
        )?;
        text_opt(
            "contact.instagram_id",
            self.instagram_id.as_deref(),
            MAX_KEY_BYTES,
        )?;
        no_nul_map("custom_fields", &self.custom_fields)?;
        for (name, value) in &self.custom_fields {
            max_len("custom_fields.name", name, MAX_KEY_BYTES)?;
            max_len("custom_fields.value", value, MAX_NOTE_BYTES)?;
        }
        if self.version < 1 {
            return Err(ValidationError::new("version", "must be at least 1"));
        }
        Ok(())
    }

    /// "First Last", or whichever part is present.
    #[must_use]
    pub fn display_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
            .trim()
            .to_owned()
    }
}

/// A company that contacts belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Company name.
    pub name: String,
    /// Primary web domain; unique per workspace when present.
    pub domain: Option<Domain>,
    /// Industry label.
    pub industry: Option<String>,
    /// Head count.
    pub employee_count: Option<u32>,
    /// Annual revenue.
    pub annual_revenue: Option<Money>,
    /// Owner.
    pub owner_id: Option<UserId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

/// Input for [`Account::create`].
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Company name (required).
    pub name: String,
    /// Domain or website URL.
    pub domain: Option<String>,
    /// Industry label.
    pub industry: Option<String>,
    /// Head count.
    pub employee_count: Option<u32>,
    /// Annual revenue.
    pub annual_revenue: Option<Money>,
    /// Owner.
    pub owner_id: Option<UserId>,
}

impl Account {
    /// Validates `input` and builds a version-1 account.
    pub fn create(
        workspace_id: WorkspaceId,
        input: NewAccount,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let account = Self {
            id: AccountId::new(),
            workspace_id,
            name: input.name.trim().to_owned(),
            domain: input.domain.as_deref().map(Domain::parse).transpose()?,
            industry: input.industry,
            employee_count: input.employee_count,
            annual_revenue: input.annual_revenue,
            owner_id: input.owner_id,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        account.validate()?;
        Ok(account)
    }

    /// Checks the stored-row rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text_max("account.name", &self.name, MAX_NAME_BYTES)?;
        max_len_opt(
            "account.domain",
            self.domain.as_ref().map(Domain::as_str),
            MAX_DOMAIN_BYTES,
        )?;
        text_opt(
            "account.industry",
            self.industry.as_deref(),
            MAX_TITLE_BYTES,
        )?;
        if self.version < 1 {
            return Err(ValidationError::new("version", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_time_zone_quotes_a_bounded_prefix() {
        let long = "Europe/".to_owned() + &"x".repeat(100_000);
        let err = parse_time_zone(&long).expect_err("unknown");
        assert!(err.to_string().len() < 200, "{}", err.to_string().len());
        assert!(err.to_string().contains("\"Europe/xxx"), "{err}");
        let short = parse_time_zone("Mars/Olympus").expect_err("unknown");
        assert!(short.to_string().contains("\"Mars/Olympus\""), "{short}");
        assert!(!short.to_string().contains("..."), "{short}");
    }

    fn now() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[test]
    fn contact_create_validates_its_input() {
        let ws = WorkspaceId::new();
        let c = Contact::create(
            ws,
            NewContact {
                first_name: " Ada ".into(),
                email: Some("ada@example.com".into()),
                time_zone: Some("Europe/Berlin".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(c.first_name, "Ada");
        assert_eq!(c.version, 1);
        assert_eq!(c.time_zone, Some(chrono_tz::Europe::Berlin));

        let err = Contact::create(ws, NewContact::default(), now()).unwrap_err();
        assert_eq!(err.field(), "contact");
        let err = Contact::create(
            ws,
            NewContact {
                email: Some("nope".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "email");
        let err = Contact::create(
            ws,
            NewContact {
                first_name: "A".into(),
                time_zone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "time_zone");
    }

    #[test]
    fn account_needs_a_name() {
        let err = Account::create(WorkspaceId::new(), NewAccount::default(), now()).unwrap_err();
        assert_eq!(err.field(), "account.name");
        let a = Account::create(
            WorkspaceId::new(),
            NewAccount {
                name: "Acme".into(),
                domain: Some("https://acme.io/".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(a.domain.unwrap().as_str(), "acme.io");
    }
}
