//! Normalisation of mapped rows: email case and whitespace, phone numbers to E.164,
//! the company domain from the email or the website, and the row's fingerprint.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::address::{Domain, EmailAddress, PhoneNumber};
use crate::ids::AccountId;
use crate::intake::manifest::{Field, MappedRow};
use crate::model::{Fingerprint, NewContact, RowError};

/// Mail providers whose domain says nothing about the company.
const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "proton.me",
    "protonmail.com",
];

/// How rows are normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NormalizeOptions {
    /// ISO 3166 region used for phone numbers written without a country code (`"DE"`).
    /// `None` accepts only international numbers.
    pub default_region: Option<String>,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            default_region: Some("US".into()),
        }
    }
}

impl NormalizeOptions {
    /// Sets the default phone region.
    #[must_use]
    pub fn with_default_region(mut self, region: Option<&str>) -> Self {
        self.default_region = region.map(str::to_owned);
        self
    }
}

/// A row ready for identity resolution and merging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizedRow {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Email, trimmed and fully lower-cased.
    pub email: Option<EmailAddress>,
    /// Phone in E.164.
    pub phone: Option<PhoneNumber>,
    /// Job title.
    pub title: Option<String>,
    /// Company name.
    pub company: Option<String>,
    /// Company domain: from the website, else from a non-free-mail email address.
    pub domain: Option<Domain>,
    /// LinkedIn profile URL, trimmed, without trailing slashes; never empty (a value
    /// of only slashes is no link).
    pub linkedin_url: Option<String>,
    /// Merge fields.
    pub custom: BTreeMap<String, String>,
}

impl NormalizedRow {
    /// The input of the contact processing creates from this row (with the account
    /// the row resolved to). Intake validates the same input, so a row the store
    /// would refuse is invalid at intake rather than failing at processing.
    #[must_use]
    pub fn contact_input(&self, account_id: Option<AccountId>) -> NewContact {
        NewContact {
            first_name: self.first_name.clone().unwrap_or_default(),
            last_name: self.last_name.clone().unwrap_or_default(),
            email: self.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: self.phone.as_ref().map(|p| p.as_str().to_owned()),
            title: self.title.clone(),
            account_id,
            linkedin_url: self.linkedin_url.clone(),
            custom_fields: self.custom.clone(),
            ..NewContact::default()
        }
    }

    /// The row's identity fingerprint (SHA-256 of email, domain, profile link).
    /// `None` when the row has none of them: it cannot be deduplicated.
    #[must_use]
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        if self.email.is_none() && self.domain.is_none() && self.linkedin_url.is_none() {
            return None;
        }
        Some(Fingerprint::compute(
            self.email.as_ref().map(EmailAddress::as_str),
            self.domain.as_ref().map(Domain::as_str),
            self.linkedin_url.as_deref(),
        ))
    }
}

/// Trims and lower-cases an address, then validates it.
pub fn normalize_email(input: &str) -> Result<EmailAddress, String> {
    EmailAddress::parse(&input.trim().to_lowercase()).map_err(|e| e.to_string())
}

/// Parses a phone number in any common notation to E.164, using `default_region` for
/// national numbers. The reason on failure never repeats the number.
pub fn normalize_phone(input: &str, default_region: Option<&str>) -> Result<PhoneNumber, String> {
    let region = match default_region {
        Some(code) => Some(
            phonenumber::country::Id::from_str(&code.trim().to_uppercase())
                .map_err(|_| "unknown default region".to_owned())?,
        ),
        None => None,
    };
    let input = input.trim();
    // A number written with its country code needs no default region, and parsing it
    // with one can corrupt it: with region US the phonenumber crate strips the US
    // national prefix `1` from the other country's number (+49 151… became +49 51…).
    let region = if input.starts_with('+') { None } else { region };
    let parsed =
        phonenumber::parse(region, input).map_err(|_| "is not a phone number".to_owned())?;
    if !phonenumber::is_valid(&parsed) {
        return Err("is not a valid phone number for its region".into());
    }
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    PhoneNumber::parse(&e164).map_err(|e| e.to_string())
}

/// The company domain of a contact: the website's host when given, else the email's
/// domain unless it is a free-mail provider.
pub fn company_domain(
    email: Option<&EmailAddress>,
    website: Option<&str>,
) -> Result<Option<Domain>, String> {
    if let Some(site) = website.filter(|s| !s.trim().is_empty()) {
        return Domain::parse(site).map(Some).map_err(|e| e.to_string());
    }
    Ok(email
        .map(EmailAddress::domain)
        .filter(|d| !FREE_MAIL.contains(d))
        .and_then(|d| Domain::parse(d).ok()))
}

/// Normalises a mapped row. Every field that does not normalise becomes a row error
/// naming the field (and `line`); the row is then invalid, and kept as such. A value
/// that is blank after trimming (or a profile link of only slashes) counts as absent,
/// so a normalised field is never empty.
pub fn normalize(
    row: &MappedRow,
    options: &NormalizeOptions,
    line: Option<u64>,
) -> Result<NormalizedRow, Vec<RowError>> {
    let mut out = NormalizedRow::default();
    let mut errors = Vec::new();
    let mut fail = |field: &Field, reason: String| {
        errors.push(RowError {
            line,
            column: Some(field.name()),
            reason,
        });
    };
    let mut website = None;
    for (field, value) in &row.values {
        let value = value.trim();
        // A blank value is no value: it must never look like a name or a contact
        // point that the contact built from the row would then not have.
        if value.is_empty() {
            continue;
        }
        match field {
            Field::FirstName => out.first_name = Some(value.to_owned()),
            Field::LastName => out.last_name = Some(value.to_owned()),
            Field::FullName => {
                let mut parts = value.splitn(2, char::is_whitespace);
                let first = parts.next().unwrap_or_default().trim();
                let last = parts.next().unwrap_or_default().trim();
                out.first_name.get_or_insert_with(|| first.to_owned());
                if !last.is_empty() {
                    out.last_name.get_or_insert_with(|| last.to_owned());
                }
            }
            Field::Email => match normalize_email(value) {
                Ok(email) => out.email = Some(email),
                Err(reason) => fail(field, reason),
            },
            Field::Phone => match normalize_phone(value, options.default_region.as_deref()) {
                Ok(phone) => out.phone = Some(phone),
                Err(reason) => fail(field, reason),
            },
            Field::Title => out.title = Some(value.to_owned()),
            Field::Company => out.company = Some(value.to_owned()),
            Field::Website => website = Some(value.to_owned()),
            Field::LinkedinUrl => {
                // Only slashes (`///`) is no link at all, not an empty one.
                let link = value.trim_end_matches('/').trim_end();
                if !link.is_empty() {
                    out.linkedin_url = Some(link.to_owned());
                }
            }
            Field::Custom(name) => {
                out.custom.insert(name.clone(), value.to_owned());
            }
        }
    }
    match company_domain(out.email.as_ref(), website.as_deref()) {
        Ok(domain) => out.domain = domain,
        Err(reason) => fail(&Field::Website, reason),
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phones_become_e164_with_the_default_region() {
        let de = Some("DE");
        assert_eq!(
            normalize_phone("030 901820", de).unwrap().as_str(),
            "+4930901820"
        );
        assert_eq!(
            normalize_phone("+1 (415) 555-2671", de).unwrap().as_str(),
            "+14155552671"
        );
        assert!(normalize_phone("12", de).is_err());
        // An international number keeps every digit whatever the default region.
        for region in [None, de, Some("US"), Some("GB")] {
            assert_eq!(
                normalize_phone("+49 151 98765400", region)
                    .unwrap()
                    .as_str(),
                "+4915198765400",
                "{region:?}"
            );
        }
        assert!(normalize_phone("030 901820", None).is_err());
        let reason = normalize_phone("+49 1", de).unwrap_err();
        assert!(!reason.contains("+49"), "reasons never repeat the number");
    }

    #[test]
    fn domain_comes_from_website_then_business_email() {
        let work = normalize_email(" Ada@Acme.IO ").unwrap();
        assert_eq!(work.as_str(), "ada@acme.io");
        let free = normalize_email("ada@gmail.com").unwrap();
        let d = |e, w| {
            company_domain(e, w)
                .unwrap()
                .map(|d: Domain| d.as_str().to_owned())
        };
        assert_eq!(d(Some(&work), None), Some("acme.io".into()));
        assert_eq!(d(Some(&free), None), None);
        assert_eq!(
            d(Some(&free), Some("https://www.Acme.io/about")),
            Some("acme.io".into())
        );
    }

    #[test]
    fn bad_fields_are_reported_with_line_and_column() {
        let mut row = MappedRow::default();
        row.values.insert(Field::Email, "not-an-email".into());
        row.values.insert(Field::Phone, "abc".into());
        row.values.insert(Field::FullName, "Ada Lovelace".into());
        let errs = normalize(&row, &NormalizeOptions::default(), Some(4)).unwrap_err();
        let cols: Vec<_> = errs.iter().filter_map(|e| e.column.clone()).collect();
        assert_eq!(cols, vec!["email".to_owned(), "phone".to_owned()]);
        assert!(errs.iter().all(|e| e.line == Some(4)));
    }

    #[test]
    fn blank_values_and_slash_only_links_are_absent() {
        let mut row = MappedRow::default();
        row.values.insert(Field::LinkedinUrl, " /// ".into());
        row.values.insert(Field::FirstName, "   ".into());
        row.values.insert(Field::FullName, " \t ".into());
        row.values.insert(Field::Email, "  ".into());
        let n = normalize(&row, &NormalizeOptions::default(), None).unwrap();
        assert_eq!(
            n,
            NormalizedRow::default(),
            "nothing is left of blank values"
        );
        assert_eq!(n.fingerprint(), None);
        let mut row = MappedRow::default();
        row.values
            .insert(Field::LinkedinUrl, "https://linkedin.com/in/ada//".into());
        let n = normalize(&row, &NormalizeOptions::default(), None).unwrap();
        assert_eq!(
            n.linkedin_url.as_deref(),
            Some("https://linkedin.com/in/ada")
        );
    }

    proptest! {
        #[test]
        fn fingerprint_ignores_email_case_and_whitespace(
            local in "[a-z][a-z0-9]{0,10}",
            host in "[a-z]{1,10}",
            pad in "[ \t]{0,3}",
            upper in any::<bool>(),
        ) {
            let plain = format!("{local}@{host}.com");
            let noisy = format!("{pad}{}{pad}", if upper { plain.to_uppercase() } else { plain.clone() });
            let mut a = MappedRow::default();
            a.values.insert(Field::Email, plain);
            let mut b = MappedRow::default();
            b.values.insert(Field::Email, noisy);
            let opts = NormalizeOptions::default();
            let fa = normalize(&a, &opts, None).unwrap().fingerprint();
            let fb = normalize(&b, &opts, None).unwrap().fingerprint();
            prop_assert!(fa.is_some());
            prop_assert_eq!(fa, fb);
        }
    }
}
