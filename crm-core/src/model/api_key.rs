//! API keys as the store keeps them: who may call a host's API, with which scopes.
//!
//! The token itself is never stored: only its SHA-256 ([`TokenHash`]). Issuing,
//! checking and revoking keys is the `access` module's job (`crate::access::ApiKeys`).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use crate::error::ValidationError;
use crate::ids::{ApiKeyId, WorkspaceId};
use crate::model::rules::{MAX_NAME_BYTES, require_text_max, stored_time};
use crate::text_enum::text_enum;

/// The length of an API key's visible prefix, in characters.
pub const API_KEY_PREFIX_LEN: usize = 8;

text_enum! {
    /// What an API key may do. Stored and shown as its text (`contacts:read`, ...).
    pub enum ApiScope {
        /// Read contacts.
        ContactsRead = "contacts:read",
        /// Create and change contacts.
        ContactsWrite = "contacts:write",
        /// Read the approval inbox.
        InboxRead = "inbox:read",
        /// Decide approval items (approve, edit, reject).
        InboxWrite = "inbox:write",
        /// Enroll contacts in sequences and pause, resume or stop enrollments.
        SequencesWrite = "sequences:write",
    }
}

/// One API key of a workspace, as listed and as returned by authentication. It holds
/// no secret: the token was shown once, at issue, and only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id.
    pub id: ApiKeyId,
    /// The workspace whose records the key may reach; no other.
    pub workspace_id: WorkspaceId,
    /// A label chosen by whoever issued it ("CI importer").
    pub name: String,
    /// The first characters of the token after the product prefix
    /// ([`API_KEY_PREFIX_LEN`] of them): shown in lists so a person can tell keys
    /// apart, and the unique lookup key of the store.
    pub prefix: String,
    /// What the key may do; never empty.
    pub scopes: BTreeSet<ApiScope>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// From this instant on, the key is refused; `None` never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (coalesced: see `crate::access`).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key is refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key holds `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: ApiScope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the key has expired at `now` (`expires_at <= now`).
    #[must_use]
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Checks the rules every store applies on insert: a name of 1 to
    /// [`MAX_NAME_BYTES`] bytes without NUL, a prefix of exactly [`API_KEY_PREFIX_LEN`]
    /// URL-safe characters (`A-Z a-z 0-9 - _`), at least one scope, and an expiry
    /// (if any) after `created_at`.
    ///
    /// # Errors
    /// `ValidationError` naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text_max("api_key.name", &self.name, MAX_NAME_BYTES)?;
        if !is_prefix(&self.prefix) {
            return Err(ValidationError::new(
                "api_key.prefix",
                "must be 8 characters of A-Z, a-z, 0-9, '-' or '_'",
            ));
        }
        if self.scopes.is_empty() {
            return Err(ValidationError::new(
                "api_key.scopes",
                "must hold at least one scope",
            ));
        }
        if self.expires_at.is_some_and(|at| at <= self.created_at) {
            return Err(ValidationError::new(
                "api_key.expires_at",
                "must be after created_at",
            ));
        }
        Ok(())
    }

    /// The key with its times at the precision stores keep (whole microseconds).
    #[must_use]
    pub fn at_stored_precision(mut self) -> Self {
        self.created_at = stored_time(self.created_at);
        self.expires_at = self.expires_at.map(stored_time);
        self.last_used_at = self.last_used_at.map(stored_time);
        self.revoked_at = self.revoked_at.map(stored_time);
        self
    }
}

/// Whether `prefix` is a well-formed visible prefix: [`API_KEY_PREFIX_LEN`] characters
/// of the URL-safe base64 alphabet.
#[must_use]
pub fn is_prefix(prefix: &str) -> bool {
    prefix.len() == API_KEY_PREFIX_LEN && prefix.bytes().all(is_url_safe)
}

/// Whether `b` is in the URL-safe base64 alphabet (RFC 4648 §5).
#[must_use]
pub(crate) fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The SHA-256 digest of an API key's whole token: all the store keeps of the secret.
///
/// `Debug` shows only that it is a hash. Compare with [`TokenHash::matches`], which
/// takes the same time wherever the digests differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps a digest (for example one read back from a database).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `other` is the same digest, compared in constant time.
    #[must_use]
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl TryFrom<&[u8]> for TokenHash {
    type Error = ValidationError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ValidationError::new("api_key.token_hash", "must be 32 bytes"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(sha256)")
    }
}

/// An API key with the hash of its token: what
/// [`ApiKeyStore`](crate::store::ApiKeyStore) inserts and finds by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key as callers see it.
    pub key: ApiKey,
    /// SHA-256 of the whole token.
    pub token_hash: TokenHash,
}

impl ApiKeyRecord {
    /// Checks the key ([`ApiKey::validate`]); the hash is well-formed by type.
    ///
    /// # Errors
    /// `ValidationError` naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.key.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn key() -> ApiKey {
        ApiKey {
            id: ApiKeyId::new(),
            workspace_id: WorkspaceId::new(),
            name: "importer".into(),
            prefix: "Ab3-_x9Z".into(),
            scopes: BTreeSet::from([ApiScope::ContactsRead]),
            created_at: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn scopes_have_stable_names() {
        let names: Vec<_> = ApiScope::ALL.iter().map(ApiScope::as_str).collect();
        assert_eq!(
            names,
            [
                "contacts:read",
                "contacts:write",
                "inbox:read",
                "inbox:write",
                "sequences:write"
            ]
        );
        for scope in ApiScope::ALL {
            assert_eq!(scope.as_str().parse::<ApiScope>(), Ok(*scope));
        }
        assert!("admin".parse::<ApiScope>().is_err());
    }

    #[test]
    fn keys_are_validated() {
        assert!(key().validate().is_ok());
        let mut k = key();
        k.name = " ".into();
        assert_eq!(k.validate().unwrap_err().field(), "api_key.name");
        for bad in ["short", "toolong12", "bad+char", "ab cd ef"] {
            let mut k = key();
            k.prefix = bad.into();
            assert_eq!(k.validate().unwrap_err().field(), "api_key.prefix", "{bad}");
        }
        let mut k = key();
        k.scopes.clear();
        assert_eq!(k.validate().unwrap_err().field(), "api_key.scopes");
        let mut k = key();
        k.expires_at = Some(k.created_at);
        assert_eq!(k.validate().unwrap_err().field(), "api_key.expires_at");
        k.expires_at = Some(k.created_at + Duration::seconds(1));
        assert!(k.validate().is_ok());
        assert!(!k.is_expired_at(k.created_at));
        assert!(k.is_expired_at(k.created_at + Duration::seconds(1)));
    }

    #[test]
    fn hashes_compare_by_value_and_do_not_print() {
        let a = TokenHash::from_bytes([7; 32]);
        assert!(a.matches(&TokenHash::from_bytes([7; 32])));
        assert!(!a.matches(&TokenHash::from_bytes([8; 32])));
        assert_eq!(format!("{a:?}"), "TokenHash(sha256)");
        assert!(TokenHash::try_from(&[0u8; 31][..]).is_err());
    }
}
