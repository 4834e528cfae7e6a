//! CSRF tokens of the inbox page's forms.
//!
//! A logged-in form carries `HMAC-SHA256(key, "session:" + session token)`: only a
//! page served to the session's holder has it (the cookie is HTTP-only and
//! `SameSite=Strict`; another site can neither read it nor compute the token). The
//! login form, before there is a session, uses a double-submit token: a random value
//! in a short-lived cookie and in the form, which must match.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The key CSRF tokens are derived with.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey([redacted])")
    }
}

impl CsrfKey {
    /// A key from configured secret bytes (hashed to 32 bytes).
    #[must_use]
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(Sha256::digest(secret).into())
    }

    /// A random key: tokens then only verify in this process.
    #[must_use]
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The token of forms shown to the holder of `session`.
    #[must_use]
    pub fn token(&self, session: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(b"session:");
        mac.update(session.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is the token of `session` (constant time).
    #[must_use]
    pub fn verify(&self, session: &str, presented: &str) -> bool {
        equal(&self.token(session), presented)
    }
}

/// A fresh random token for the login form's double submit.
#[must_use]
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Constant-time comparison of two tokens; empty never matches.
#[must_use]
pub fn equal(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_the_session_and_the_key() {
        let key = CsrfKey::from_secret(b"k");
        let token = key.token("session-a");
        assert!(key.verify("session-a", &token));
        assert!(!key.verify("session-b", &token));
        assert!(!CsrfKey::from_secret(b"other").verify("session-a", &token));
        assert!(!key.verify("session-a", ""));
        assert!(!equal("", ""));
    }
}
