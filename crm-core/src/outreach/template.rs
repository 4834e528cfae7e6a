//! Rendering step templates with merge fields from the contact and its account.
//!
//! Placeholders are `{{ field }}`. A field that is missing or blank is an error, never
//! an empty string in a sent message; `{{ field | fallback text }}` opts into a fallback.
//!
//! `{{booking_link}}` is the step's booking link, or the workspace's Cal.com booking
//! link (see [`step_booking_link`](crate::outreach::runner::step_booking_link)).

use std::collections::BTreeMap;

use crate::model::{Account, Contact};

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The field has no value for this contact and the placeholder has no fallback.
    #[error("merge field {field:?} has no value and no fallback")]
    MissingField {
        /// The field name.
        field: String,
    },
    /// The field name is not one the engine knows.
    #[error("unknown merge field {field:?}")]
    UnknownField {
        /// The field name.
        field: String,
    },
    /// A `{{` without its `}}`, or an empty placeholder.
    #[error("malformed placeholder at byte {offset}")]
    Malformed {
        /// Where the placeholder starts.
        offset: usize,
    },
}

/// The values a template can use: the contact, its account, and extra values the host
/// provides (a booking link, a sender name).
#[derive(Debug, Clone, Copy)]
pub struct MergeContext<'a> {
    contact: &'a Contact,
    account: Option<&'a Account>,
    extra: Option<&'a BTreeMap<String, String>>,
    booking_link: Option<&'a str>,
}

impl<'a> MergeContext<'a> {
    /// Values from `contact` (and its `account`, when loaded).
    #[must_use]
    pub fn new(contact: &'a Contact, account: Option<&'a Account>) -> Self {
        Self {
            contact,
            account,
            extra: None,
            booking_link: None,
        }
    }

    /// Sets the value of `{{booking_link}}` (`None`: the field is known but empty).
    #[must_use]
    pub fn with_booking_link(mut self, link: Option<&'a str>) -> Self {
        self.booking_link = link;
        self
    }

    /// Adds host-provided values, available as `extra.<name>`.
    #[must_use]
    pub fn with_extra(mut self, extra: &'a BTreeMap<String, String>) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The value of `field`: `Ok(None)` when the field is known but empty for this
    /// contact, `Err(UnknownField)` when no such field exists.
    pub fn lookup(&self, field: &str) -> Result<Option<String>, TemplateError> {
        let c = self.contact;
        let non_blank = |s: &str| {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        };
        let value = match field {
            "first_name" | "contact.first_name" => non_blank(&c.first_name),
            "last_name" | "contact.last_name" => non_blank(&c.last_name),
            "full_name" | "contact.full_name" => non_blank(&c.display_name()),
            "email" | "contact.email" => c.email.as_ref().map(|e| e.to_string()),
            "phone" | "contact.phone" => c.phone.as_ref().map(|p| p.to_string()),
            "title" | "contact.title" => c.title.as_deref().and_then(non_blank),
            "company" | "account.name" => self.account.and_then(|a| non_blank(&a.name)),
            "account.domain" => self
                .account
                .and_then(|a| a.domain.as_ref())
                .map(|d| d.to_string()),
            "booking_link" => self.booking_link.and_then(non_blank),
            "account.industry" => self
                .account
                .and_then(|a| a.industry.as_deref())
                .and_then(non_blank),
            other => {
                if let Some(key) = other.strip_prefix("custom.") {
                    c.custom_fields.get(key).and_then(|v| non_blank(v))
                } else if let Some(key) = other.strip_prefix("extra.") {
                    self.extra
                        .and_then(|e| e.get(key))
                        .and_then(|v| non_blank(v))
                } else {
                    return Err(TemplateError::UnknownField {
                        field: other.to_owned(),
                    });
                }
            }
        };
        Ok(value)
    }
}

/// One `{{ ... }}` occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder<'t> {
    start: usize,
    end: usize,
    field: &'t str,
    fallback: Option<&'t str>,
}

fn placeholders(template: &str) -> Result<Vec<Placeholder<'_>>, TemplateError> {
    let mut found = Vec::new();
    let mut cursor = 0;
    while let Some(open) = template.get(cursor..).and_then(|rest| rest.find("{{")) {
        let start = cursor + open;
        let inner_start = start + 2;
        let close = template
            .get(inner_start..)
            .and_then(|rest| rest.find("}}"))
            .ok_or(TemplateError::Malformed { offset: start })?;
        let inner = template
            .get(inner_start..inner_start + close)
            .ok_or(TemplateError::Malformed { offset: start })?;
        let (field, fallback) = match inner.split_once('|') {
            Some((f, fb)) => (f.trim(), Some(fb.trim())),
            None => (inner.trim(), None),
        };
        if field.is_empty() || field.contains("{{") {
            return Err(TemplateError::Malformed { offset: start });
        }
        let end = inner_start + close + 2;
        found.push(Placeholder {
            start,
            end,
            field,
            fallback,
        });
        cursor = end;
    }
    Ok(found)
}

/// The field names a template uses, in order of appearance, checked for syntax. Use it
/// to validate a sequence when it is saved rather than when it first sends.
pub fn fields(template: &str) -> Result<Vec<&str>, TemplateError> {
    Ok(placeholders(template)?
        .into_iter()
        .map(|p| p.field)
        .collect())
}

/// Renders `template` for `ctx`.
pub fn render(template: &str, ctx: &MergeContext<'_>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut cursor = 0;
    for p in placeholders(template)? {
        out.push_str(template.get(cursor..p.start).unwrap_or_default());
        match (ctx.lookup(p.field)?, p.fallback) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(fallback)) => out.push_str(fallback),
            (None, None) => {
                return Err(TemplateError::MissingField {
                    field: p.field.to_owned(),
                });
            }
        }
        cursor = p.end;
    }
    out.push_str(template.get(cursor..).unwrap_or_default());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::model::{NewAccount, NewContact};
    use chrono::DateTime;
    use proptest::prelude::*;

    fn ada() -> (Contact, Account) {
        let ws = WorkspaceId::new();
        let account = Account::create(
            ws,
            NewAccount {
                name: "Acme".into(),
                domain: Some("acme.io".into()),
                ..Default::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        let mut contact = Contact::create(
            ws,
            NewContact {
                first_name: "Ada".into(),
                email: Some("ada@acme.io".into()),
                account_id: Some(account.id),
                ..Default::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        contact
            .custom_fields
            .insert("pain".into(), "slow reports".into());
        (contact, account)
    }

    #[test]
    fn renders_contact_account_and_custom_fields() {
        let (c, a) = ada();
        let ctx = MergeContext::new(&c, Some(&a));
        let text = render(
            "Hi {{first_name}}, {{ company }} ({{account.domain}}) and {{custom.pain}}?",
            &ctx,
        )
        .unwrap();
        assert_eq!(text, "Hi Ada, Acme (acme.io) and slow reports?");
    }

    #[test]
    fn a_missing_field_is_an_error_never_a_blank() {
        let (c, _) = ada();
        let ctx = MergeContext::new(&c, None);
        assert_eq!(
            render("Hi {{last_name}}", &ctx).unwrap_err(),
            TemplateError::MissingField {
                field: "last_name".into()
            }
        );
        assert_eq!(
            render("At {{company}}", &ctx).unwrap_err(),
            TemplateError::MissingField {
                field: "company".into()
            }
        );
        assert_eq!(
            render("Hi {{last_name | there}}", &ctx).unwrap(),
            "Hi there"
        );
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_reported() {
        let (c, a) = ada();
        let ctx = MergeContext::new(&c, Some(&a));
        assert!(matches!(
            render("{{shoe_size}}", &ctx),
            Err(TemplateError::UnknownField { .. })
        ));
        assert_eq!(
            render("Hi {{first_name", &ctx).unwrap_err(),
            TemplateError::Malformed { offset: 3 }
        );
        assert!(matches!(
            render("{{ }}", &ctx),
            Err(TemplateError::Malformed { .. })
        ));
        assert_eq!(fields("{{a}} {{ b | c }}").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn extra_values_come_from_the_host() {
        let (c, a) = ada();
        let extra = BTreeMap::from([("booking_link".to_owned(), "https://cal.com/x".to_owned())]);
        let ctx = MergeContext::new(&c, Some(&a)).with_extra(&extra);
        assert_eq!(
            render("Book: {{extra.booking_link}}", &ctx).unwrap(),
            "Book: https://cal.com/x"
        );
    }

    #[test]
    fn booking_link_is_a_merge_field() {
        let (c, a) = ada();
        let none = MergeContext::new(&c, Some(&a));
        assert_eq!(
            render("Book: {{booking_link}}", &none).unwrap_err(),
            TemplateError::MissingField {
                field: "booking_link".into()
            }
        );
        let ctx = none.with_booking_link(Some("https://cal.com/ada/30min"));
        assert_eq!(
            render("Book: {{booking_link}}", &ctx).unwrap(),
            "Book: https://cal.com/ada/30min"
        );
    }

    proptest! {
        #[test]
        fn rendering_never_panics(template in ".{0,200}") {
            let (c, a) = ada();
            let _ = render(&template, &MergeContext::new(&c, Some(&a)));
        }

        #[test]
        fn text_without_placeholders_is_unchanged(text in "[^{}]{0,200}") {
            let (c, a) = ada();
            prop_assert_eq!(render(&text, &MergeContext::new(&c, Some(&a))).unwrap(), text);
        }
    }
}
