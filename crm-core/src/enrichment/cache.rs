//! Cache policy: how long each kind of enrichment data stays fresh, and the opaque
//! subject keys cache rows are stored under.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::address::{Domain, EmailAddress};
use crate::enrichment::ContactQuery;
use crate::error::ValidationError;
use crate::store::EnrichmentDataType;

/// Freshness per data type. Defaults: company 30 days, contact 30 days, email
/// verification 7 days, social links 90 days.
///
/// An entry is fresh while `now < fetched_at + ttl`: at exactly the TTL it has expired.
/// A clock that went backwards (`now < fetched_at`) still counts the entry as fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachePolicy {
    /// TTL of [`EnrichmentDataType::Contact`].
    pub contact: Duration,
    /// TTL of [`EnrichmentDataType::Company`].
    pub company: Duration,
    /// TTL of [`EnrichmentDataType::EmailVerification`].
    pub email_verification: Duration,
    /// TTL of [`EnrichmentDataType::SocialLinks`].
    pub social_links: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            contact: Duration::days(30),
            company: Duration::days(30),
            email_verification: Duration::days(7),
            social_links: Duration::days(90),
        }
    }
}

impl CachePolicy {
    /// The TTL of `data_type`.
    #[must_use]
    pub fn ttl(&self, data_type: EnrichmentDataType) -> Duration {
        match data_type {
            EnrichmentDataType::Contact => self.contact,
            EnrichmentDataType::Company => self.company,
            EnrichmentDataType::EmailVerification => self.email_verification,
            EnrichmentDataType::SocialLinks => self.social_links,
        }
    }

    /// This policy with `ttl` for `data_type` (a zero or negative TTL disables caching
    /// of that type: nothing is ever fresh).
    #[must_use]
    pub fn with_ttl(mut self, data_type: EnrichmentDataType, ttl: Duration) -> Self {
        let slot = match data_type {
            EnrichmentDataType::Contact => &mut self.contact,
            EnrichmentDataType::Company => &mut self.company,
            EnrichmentDataType::EmailVerification => &mut self.email_verification,
            EnrichmentDataType::SocialLinks => &mut self.social_links,
        };
        *slot = ttl;
        self
    }

    /// Whether data of `data_type` fetched at `fetched_at` is still fresh at `now`.
    #[must_use]
    pub fn is_fresh(
        &self,
        data_type: EnrichmentDataType,
        fetched_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let ttl = self.ttl(data_type);
        if ttl <= Duration::zero() {
            return false;
        }
        match fetched_at.checked_add_signed(ttl) {
            Some(expires_at) => now < expires_at,
            None => true,
        }
    }
}

/// The cache key of a subject: a SHA-256 (hex) of its normalized form, so cache rows
/// never hold a raw email address.
fn digest(normalized: &str) -> String {
    let hash = Sha256::digest(normalized.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subject key of a contact lookup: by email when known, otherwise by name and
/// domain. `Invalid` when the query has neither an email nor a name with a domain.
pub fn contact_subject(query: &ContactQuery) -> Result<String, ValidationError> {
    if let Some(email) = &query.email {
        return Ok(digest(&format!(
            "email:{}",
            email.as_str().trim().to_lowercase()
        )));
    }
    let name = |part: &Option<String>| part.as_deref().unwrap_or("").trim().to_lowercase();
    let (first, last) = (name(&query.first_name), name(&query.last_name));
    match &query.domain {
        Some(domain) if !(first.is_empty() && last.is_empty()) => Ok(digest(&format!(
            "name:{first}|{last}|{}",
            domain.as_str().to_lowercase()
        ))),
        _ => Err(ValidationError::new(
            "contact_query",
            "needs an email, or a name with a domain",
        )),
    }
}

/// The subject key of a company lookup.
#[must_use]
pub fn company_subject(domain: &Domain) -> String {
    digest(&format!("domain:{}", domain.as_str().to_lowercase()))
}

/// The subject key of an email verification.
#[must_use]
pub fn email_subject(email: &EmailAddress) -> String {
    digest(&format!("email:{}", email.as_str().trim().to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn defaults_follow_the_issue() {
        let p = CachePolicy::default();
        assert_eq!(p.ttl(EnrichmentDataType::Company), Duration::days(30));
        assert_eq!(p.ttl(EnrichmentDataType::Contact), Duration::days(30));
        assert_eq!(
            p.ttl(EnrichmentDataType::EmailVerification),
            Duration::days(7)
        );
        assert_eq!(p.ttl(EnrichmentDataType::SocialLinks), Duration::days(90));
    }

    #[test]
    fn fresh_until_exactly_the_ttl() {
        let p = CachePolicy::default();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ty = EnrichmentDataType::EmailVerification;
        assert!(p.is_fresh(ty, t, t + Duration::days(7) - Duration::microseconds(1)));
        assert!(!p.is_fresh(ty, t, t + Duration::days(7)));
        let off = p.with_ttl(ty, Duration::zero());
        assert!(!off.is_fresh(ty, t, t));
    }

    #[test]
    fn subjects_are_hashed_and_normalized() {
        let a = ContactQuery {
            email: Some(EmailAddress::parse("Ada@Example.com").unwrap()),
            ..Default::default()
        };
        let key = contact_subject(&a).unwrap();
        assert!(!key.contains('@'));
        assert_eq!(key.len(), 64);
        let b = ContactQuery {
            email: Some(EmailAddress::parse("ada@example.com").unwrap()),
            ..Default::default()
        };
        assert_eq!(key, contact_subject(&b).unwrap());
        assert!(contact_subject(&ContactQuery::default()).is_err());
    }
}
