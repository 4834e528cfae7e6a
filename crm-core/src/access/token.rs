//! The token format: minting from the OS random number generator, parsing what a
//! client presents, and hashing.
//!
//! A token reads `crm_` + the 8-character visible prefix + `_` + 43 characters of
//! secret, 56 characters in all, every one of them URL-safe (`A-Z a-z 0-9 - _`):
//! the prefix is 6 random bytes and the secret 32 random bytes (256 bits), each in
//! unpadded URL-safe base64. Parsing goes by position, so the `-` and `_` inside the
//! base64 parts never confuse it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use rand::rngs::SysRng;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::access::AccessError;
use crate::model::{API_KEY_PREFIX_LEN, TokenHash, is_prefix, is_url_safe};

/// What every token starts with, so a leaked one is recognisable (secret scanners
/// match on it) and a token from another product is refused as malformed.
pub const TOKEN_PRODUCT_PREFIX: &str = "crm_";

/// Random bytes behind the visible prefix: 6 bytes are 8 base64 characters.
const PREFIX_BYTES: usize = 6;
/// Random bytes of the secret: 256 bits, far beyond guessing.
const SECRET_BYTES: usize = 32;
/// The secret's length in unpadded base64: ceil(32 * 4 / 3).
const SECRET_CHARS: usize = 43;

/// The length of every token, in characters.
pub const TOKEN_LEN: usize = TOKEN_PRODUCT_PREFIX.len() + API_KEY_PREFIX_LEN + 1 + SECRET_CHARS;

/// A freshly minted token: its visible prefix, the token, and the hash to store.
pub(crate) struct Minted {
    pub(crate) prefix: String,
    pub(crate) token: SecretString,
    pub(crate) hash: TokenHash,
}

/// Mints a token from the operating system's random number generator.
pub(crate) fn mint() -> Result<Minted, AccessError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    SysRng
        .try_fill_bytes(&mut prefix)
        .and_then(|()| SysRng.try_fill_bytes(&mut secret))
        .map_err(|e| AccessError::Randomness(Box::new(e)))?;
    let prefix = URL_SAFE_NO_PAD.encode(prefix);
    let token = format!(
        "{TOKEN_PRODUCT_PREFIX}{prefix}_{}",
        URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = hash(&token);
    Ok(Minted {
        prefix,
        token: SecretString::from(token),
        hash,
    })
}

/// The parts of a well-formed presented token.
#[derive(Debug)]
pub(crate) struct Presented<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) hash: TokenHash,
}

/// Splits a presented token into its prefix and hash. An empty (or blank) token is
/// `Missing`; anything not in the format is `Malformed`.
pub(crate) fn parse(presented: &str) -> Result<Presented<'_>, AccessError> {
    if presented.trim().is_empty() {
        return Err(AccessError::Missing);
    }
    let body = presented
        .strip_prefix(TOKEN_PRODUCT_PREFIX)
        .filter(|_| presented.len() == TOKEN_LEN)
        .ok_or(AccessError::Malformed)?;
    let (prefix, rest) = body
        .split_at_checked(API_KEY_PREFIX_LEN)
        .ok_or(AccessError::Malformed)?;
    let secret = rest.strip_prefix('_').ok_or(AccessError::Malformed)?;
    if !is_prefix(prefix) || !secret.bytes().all(is_url_safe) {
        return Err(AccessError::Malformed);
    }
    Ok(Presented {
        prefix,
        hash: hash(presented),
    })
}

/// SHA-256 of the whole token.
///
/// A fast hash is the right one here, unlike for passwords: the secret is 256 bits
/// from the OS random number generator, so there is no dictionary to try and a
/// brute-force search of 2^256 candidates is out of reach however fast each guess is.
/// A slow KDF (argon2, bcrypt) would only add latency to every request.
pub(crate) fn hash(token: &str) -> TokenHash {
    TokenHash::from_bytes(Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn minted_tokens_parse_back_to_their_prefix_and_hash() {
        let minted = mint().unwrap();
        let token = minted.token.expose_secret();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.starts_with("crm_"));
        assert!(token.bytes().all(is_url_safe));
        let parsed = parse(token).unwrap();
        assert_eq!(parsed.prefix, minted.prefix);
        assert!(parsed.hash.matches(&minted.hash));
    }

    #[test]
    fn minted_tokens_differ() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert_ne!(a.prefix, b.prefix);
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
        // The secret decodes back to its 32 random bytes: 256 bits.
        let token = a.token.expose_secret();
        let secret = URL_SAFE_NO_PAD.decode(&token[TOKEN_LEN - SECRET_CHARS..]).unwrap();
        assert_eq!(secret.len(), SECRET_BYTES);
    }

    #[test]
    fn bad_tokens_are_missing_or_malformed() {
        let good = mint().unwrap().token.expose_secret().to_owned();
        assert!(matches!(parse(""), Err(AccessError::Missing)));
        assert!(matches!(parse("  "), Err(AccessError::Missing)));
        let mut wrong_product = good.clone();
        wrong_product.replace_range(0..4, "xyz_");
        let mut no_separator = good.clone();
        no_separator.replace_range(12..13, "+");
        let mut bad_char = good.clone();
        bad_char.replace_range(20..21, "=");
        let mut non_ascii = good.clone();
        non_ascii.replace_range(50..52, "é");
        for bad in [
            "Bearer x".to_owned(),
            good[..TOKEN_LEN - 1].to_owned(),
            format!("{good}A"),
            wrong_product,
            no_separator,
            bad_char,
            non_ascii,
        ] {
            assert!(
                matches!(parse(&bad), Err(AccessError::Malformed)),
                "{bad:?} is malformed"
            );
        }
    }
}
