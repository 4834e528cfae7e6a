//! Validated contact points: email addresses, phone numbers, domains.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A syntactically valid email address, normalised (trimmed, domain lower-cased).
///
/// Parsing follows RFC 5322 through the `email_address` crate; the local part keeps its
/// case because some mail servers treat it as significant, but [`EmailAddress::normalized`]
/// gives the fully lower-cased form used for identity matching and suppression.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalises an address.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        let parsed = email_address::EmailAddress::from_str(trimmed)
            .map_err(|e| ValidationError::new("email", format!("is not a valid address ({e})")))?;
        let domain = parsed.domain();
        if !domain.contains('.') || domain.starts_with('[') {
            return Err(ValidationError::new(
                "email",
                "domain must be a dotted host name",
            ));
        }
        Ok(Self(format!(
            "{}@{}",
            parsed.local_part(),
            domain.to_ascii_lowercase()
        )))
    }

    /// The address as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identity key used for matching, uniqueness and suppression
    /// ([`normalize_email`]). Every store compares addresses by this key.
    #[must_use]
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }

    /// The domain part.
    #[must_use]
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// The identity key of an email address: trimmed, the local part lower-cased with
/// Unicode rules, the domain in its IDNA ASCII form (`Bücher.Example` and
/// `xn--bcher-kva.example` are one domain). Two addresses are the same contact point
/// exactly when their keys are equal; it is computed here, never by a database, so
/// every store agrees. Text without `@` (or with a domain that is not a valid IDNA
/// name) is lower-cased whole.
#[must_use]
pub fn normalize_email(address: &str) -> String {
    let trimmed = address.trim();
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return trimmed.to_lowercase();
    };
    let domain = match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => ascii,
        _ => domain.to_lowercase(),
    };
    format!("{}@{domain}", local.to_lowercase())
}

impl fmt::Debug for EmailAddress {
    // Debug output ends up in logs: show the domain only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(***@{})", self.domain())
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmailAddress {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> String {
        e.0
    }
}

/// A phone number in E.164 form (`+` followed by 8 to 15 digits).
///
/// This type only checks the shape. Normalising free-form input ("(030) 1234-567")
/// to E.164 needs country metadata and belongs to intake.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts an E.164 number such as `+4915112345678`.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        let digits = trimmed.strip_prefix('+').ok_or_else(|| {
            ValidationError::new("phone", "must be in E.164 form, starting with '+'")
        })?;
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(ValidationError::new(
                "phone",
                "must be '+' followed by 8 to 15 digits, not starting with 0",
            ))
        }
    }

    /// The number, e.g. `"+4915112345678"`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    // Keep numbers out of logs: show the last two digits only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = self.0.get(self.0.len().saturating_sub(2)..).unwrap_or("");
        write!(f, "PhoneNumber(+***{tail})")
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

/// A lower-cased DNS domain such as `example.com`, without scheme, path or `www.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// Accepts `example.com`, `https://www.Example.com/about` and the like.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let mut host = input.trim().to_ascii_lowercase();
        for prefix in ["https://", "http://"] {
            if let Some(rest) = host.strip_prefix(prefix) {
                host = rest.to_owned();
            }
        }
        let host = host
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        let host = host.strip_prefix("www.").unwrap_or(host);
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if host.len() > 253 || !host.contains('.') || !labels_ok {
            return Err(ValidationError::new(
                "domain",
                "must be a host name such as example.com",
            ));
        }
        Ok(Self(host.to_owned()))
    }

    /// The domain, e.g. `"example.com"`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Domain {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_normalised() {
        let e = EmailAddress::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@example.com");
        assert_eq!(e.normalized(), "ada.lovelace@example.com");
        assert_eq!(e.domain(), "example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn email_keys_fold_unicode_case_and_idn_domains() {
        let unicode = EmailAddress::parse("JÖRG@BÜCHER.Example").unwrap();
        let lower = EmailAddress::parse("jörg@bücher.example").unwrap();
        let ascii = EmailAddress::parse("Jörg@xn--bcher-kva.EXAMPLE").unwrap();
        assert_eq!(unicode.normalized(), "jörg@xn--bcher-kva.example");
        assert_eq!(lower.normalized(), unicode.normalized());
        assert_eq!(ascii.normalized(), unicode.normalized());
        assert_eq!(normalize_email(" Ada@Example.COM "), "ada@example.com");
        assert_eq!(normalize_email("no-at-sign"), "no-at-sign");
    }

    #[test]
    fn email_debug_hides_the_local_part() {
        let e = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }

    #[test]
    fn phone_numbers_must_be_e164() {
        assert!(PhoneNumber::parse("+4915112345678").is_ok());
        for bad in [
            "015112345678",
            "+0151",
            "+49 151 1234",
            "+12",
            "+1234567890123456",
        ] {
            assert!(
                PhoneNumber::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let p = PhoneNumber::parse("+4915112345678").unwrap();
        assert!(!format!("{p:?}").contains("151123"));
    }

    #[test]
    fn domains_are_extracted_from_urls() {
        assert_eq!(
            Domain::parse("https://www.Example.com/about?x=1")
                .unwrap()
                .as_str(),
            "example.com"
        );
        for bad in ["", "localhost", "exa mple.com", "-bad.com", "a..b"] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
