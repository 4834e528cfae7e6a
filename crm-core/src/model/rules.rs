//! The input rules every store applies, written once.
//!
//! Each model type's `validate` builds on these, and stores call `validate` (and the
//! argument checks below) instead of repeating the rules per backend, so a rule holds
//! on every store alike.
//!
//! Text and JSON never hold U+0000: PostgreSQL `text` and `jsonb` cannot store it, so
//! every store refuses it with the same [`ValidationError`] instead of one backend
//! accepting it and the other failing with a server message.
//!
//! # Limits
//!
//! Every text field has a maximum length in bytes of UTF-8, one constant per kind
//! below. Any text passed through `no_nul` or `require_text` is held to
//! [`MAX_BODY_BYTES`]; shorter kinds add `max_len`. Every field a PostgreSQL btree
//! index covers (emails, links, phones, names, keys) is capped at
//! [`MAX_URL_BYTES`] or less, well under the ~2.7 KB index row limit, so a value one
//! store accepts never fails on the other's index.
//!
//! JSON values (payloads, metadata, intake rows) must read back exactly from every
//! store: see [`check_json`] for the number and nesting rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};

use crate::error::ValidationError;

/// Maximum bytes of an email address (64-byte local part, `@`, 255-byte domain).
pub const MAX_EMAIL_BYTES: usize = 320;
/// Maximum bytes of a web domain (a DNS name is at most 253 characters).
pub const MAX_DOMAIN_BYTES: usize = 253;
/// Maximum bytes of a phone number as stored (E.164 needs at most 16).
pub const MAX_PHONE_BYTES: usize = 32;
/// Maximum bytes of a person's given or family name, and of an account, deal,
/// pipeline, stage, sequence or rule name.
pub const MAX_NAME_BYTES: usize = 200;
/// Maximum bytes of a job title, an industry label, a message or template subject.
pub const MAX_TITLE_BYTES: usize = 500;
/// Maximum bytes of a key: ids from outside (Instagram ids, provider message ids),
/// kinds, idempotency and dedup keys, subjects, providers, lease names and holders,
/// field names, source references, recipient addresses, audit actions.
pub const MAX_KEY_BYTES: usize = 512;
/// Maximum bytes of a URL such as a LinkedIn profile link.
pub const MAX_URL_BYTES: usize = 2048;
/// Maximum bytes of a note: custom field values, summaries, error texts, reasons.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Maximum bytes of a body (message and template bodies), and of any text field
/// without a shorter limit.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deepest nesting of arrays and objects a JSON value may have (a scalar is depth 0,
/// `[1]` depth 1). PostgreSQL refuses jsonb deeper than its own limits and serde_json
/// refuses to read back more than 128 levels; 64 stays clear of both.
pub const MAX_JSON_DEPTH: usize = 64;
/// Largest magnitude of a JSON number that is not an integer in `i64`/`u64` range.
/// PostgreSQL `jsonb` keeps numbers as `numeric` and renders them without exponent,
/// so `1e300` comes back as a 301-digit integer that serde_json may refuse or
/// round; numbers up to 1e15 in magnitude come back as text serde_json parses to the
/// same `f64`.
pub const MAX_JSON_FLOAT_MAGNITUDE: f64 = 1e15;

/// What a refused NUL character is reported as.
const NUL_REASON: &str = "must not contain NUL characters";

/// `Invalid` when `value` holds U+0000 or is longer than [`MAX_BODY_BYTES`].
pub(crate) fn no_nul(field: &'static str, value: &str) -> Result<(), ValidationError> {
    no_nul_in(field, value)?;
    max_len(field, value, MAX_BODY_BYTES)
}

/// `Invalid` when `value` holds U+0000, whatever its length.
fn no_nul_in(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        Err(ValidationError::new(field, NUL_REASON))
    } else {
        Ok(())
    }
}

/// `Invalid` when `value` is longer than `max` bytes; the reason names the limit.
pub(crate) fn max_len(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        Err(ValidationError::new(
            field,
            format!("is {} bytes, longer than the limit of {max}", value.len()),
        ))
    } else {
        Ok(())
    }
}

/// [`max_len`] for an optional text field.
pub(crate) fn max_len_opt(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| max_len(field, v, max))
}

/// [`no_nul`] and [`max_len`] together: the usual rule of an optional short field.
pub(crate) fn text_opt(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), ValidationError> {
    no_nul_opt(field, value)?;
    max_len_opt(field, value, max)
}

/// [`require_text`] and [`max_len`] together: the usual rule of a required field.
pub(crate) fn require_text_max(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ValidationError> {
    require_text(field, value)?;
    max_len(field, value, max)
}

/// [`no_nul`] for an optional text field.
pub(crate) fn no_nul_opt(field: &'static str, value: Option<&str>) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| no_nul(field, v))
}

/// The rules of every stored JSON value, so it reads back exactly from every store:
/// no key or string holds U+0000 (strings inside JSON have no length limit of their
/// own: no index covers them, and an intake row keeps a hostile 1 MB cell as read so
/// the row can be reported invalid rather than the import refused); nesting is
/// at most [`MAX_JSON_DEPTH`]; and every number is an integer in `i64` or `u64`
/// range or a finite float of magnitude at most [`MAX_JSON_FLOAT_MAGNITUDE`] (larger
/// floats are refused rather than kept as text, so a value never changes type).
pub fn check_json(field: &'static str, value: &serde_json::Value) -> Result<(), ValidationError> {
    json_rules(field, value, 0)
}

fn json_rules(
    field: &'static str,
    value: &serde_json::Value,
    depth: usize,
) -> Result<(), ValidationError> {
    use serde_json::Value;
    let nested = |depth: usize| {
        if depth > MAX_JSON_DEPTH {
            Err(ValidationError::new(
                field,
                format!("nests deeper than {MAX_JSON_DEPTH} levels"),
            ))
        } else {
            Ok(())
        }
    };
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::String(s) => no_nul_in(field, s),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                return Ok(());
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() <= MAX_JSON_FLOAT_MAGNITUDE => Ok(()),
                _ => Err(ValidationError::new(
                    field,
                    format!(
                        "holds a number no store returns exactly (floats are limited to \
                         magnitude {MAX_JSON_FLOAT_MAGNITUDE:e})"
                    ),
                )),
            }
        }
        Value::Array(items) => {
            nested(depth + 1)?;
            items
                .iter()
                .try_for_each(|item| json_rules(field, item, depth + 1))
        }
        Value::Object(map) => {
            nested(depth + 1)?;
            map.iter().try_for_each(|(k, v)| {
                no_nul_in(field, k)?;
                json_rules(field, v, depth + 1)
            })
        }
    }
}

/// `Invalid` when any key or value of `map` holds U+0000.
pub(crate) fn no_nul_map(
    field: &'static str,
    map: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    if map
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        Err(ValidationError::new(field, NUL_REASON))
    } else {
        Ok(())
    }
}

/// `Invalid` unless `value` has a non-blank character and no NUL.
pub(crate) fn require_text(field: &'static str, value: &str) -> Result<(), ValidationError> {
    crate::error::require_non_blank(field, value)?;
    no_nul(field, value)
}

/// `Invalid` unless a row being inserted has version 1.
pub fn require_new_version(version: i64) -> Result<(), ValidationError> {
    if version == 1 {
        Ok(())
    } else {
        Err(ValidationError::new(
            "version",
            "a new row must have version 1",
        ))
    }
}

/// `Invalid` unless the version a compare-and-set expects is at least 1.
pub fn require_expected_version(version: i64) -> Result<(), ValidationError> {
    if version >= 1 {
        Ok(())
    } else {
        Err(ValidationError::new("version", "must be at least 1"))
    }
}

/// `Invalid` unless a lease or claim time-to-live is positive.
pub fn require_positive_ttl(ttl: Duration) -> Result<(), ValidationError> {
    if ttl > Duration::zero() {
        Ok(())
    } else {
        Err(ValidationError::new("ttl", "must be positive"))
    }
}

/// The arguments of taking a named lease: a name and a holder (non-blank, no NUL) and
/// a positive time-to-live.
pub fn validate_lease_request(
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<(), ValidationError> {
    require_text_max("lease.name", name, MAX_KEY_BYTES)?;
    require_text_max("lease.holder", holder, MAX_KEY_BYTES)?;
    require_positive_ttl(ttl)
}

/// The amount of a quota consumption: at least one unit.
pub fn validate_quota_amount(amount: u32) -> Result<(), ValidationError> {
    if amount == 0 {
        Err(ValidationError::new("amount", "must be at least 1"))
    } else {
        Ok(())
    }
}

/// `instant` at the precision every store keeps: whole microseconds, truncated (as
/// PostgreSQL's `timestamptz` keeps them). Constructors apply it to the times they are
/// given, so a row read back from any store equals the row written.
#[must_use]
pub fn stored_time(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_in_text_json_and_maps() {
        assert_eq!(no_nul("f", "a\0b").unwrap_err().field(), "f");
        assert!(no_nul("f", "ab").is_ok());
        assert!(no_nul_opt("f", Some("\0")).is_err());
        assert!(no_nul_opt("f", None).is_ok());
        assert!(check_json("f", &serde_json::json!({"k": ["x\0"]})).is_err());
        assert!(check_json("f", &serde_json::json!({"k\0": 1})).is_err());
        assert!(check_json("f", &serde_json::json!({"k": ["x"]})).is_ok());
        let map = BTreeMap::from([("k".to_owned(), "v\0".to_owned())]);
        assert!(no_nul_map("f", &map).is_err());
        assert!(require_text("f", " ").is_err());
        assert!(require_text("f", "a\0").is_err());
    }

    #[test]
    fn text_limits_name_the_limit() {
        assert!(max_len("f", &"a".repeat(10), 10).is_ok());
        let err = max_len("f", &"a".repeat(11), 10).unwrap_err();
        assert_eq!(err.reason(), "is 11 bytes, longer than the limit of 10");
        assert!(no_nul("f", &"a".repeat(MAX_BODY_BYTES)).is_ok());
        assert!(no_nul("f", &"a".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(
            require_text_max("f", "é", 1).is_err(),
            "bytes, not characters"
        );
        assert!(text_opt("f", None, 0).is_ok());
    }

    fn nest(depth: usize) -> serde_json::Value {
        (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!([v]))
    }

    #[test]
    fn json_numbers_and_depth_are_limited() {
        use serde_json::json;
        assert!(check_json("f", &json!(f64::MAX)).is_err());
        assert!(check_json("f", &json!(-1e16)).is_err());
        assert!(check_json("f", &json!(1e15)).is_ok());
        assert!(check_json("f", &json!(-0.125)).is_ok());
        assert!(check_json("f", &json!(u64::MAX)).is_ok());
        assert!(check_json("f", &json!(i64::MIN)).is_ok());
        assert!(check_json("f", &nest(MAX_JSON_DEPTH)).is_ok());
        assert!(check_json("f", &nest(MAX_JSON_DEPTH + 1)).is_err());
        assert!(check_json("f", &json!({"k": nest(MAX_JSON_DEPTH)})).is_err());
    }

    #[test]
    fn argument_rules() {
        assert!(require_new_version(1).is_ok());
        assert!(require_new_version(2).is_err());
        assert!(require_expected_version(0).is_err());
        assert!(require_positive_ttl(Duration::zero()).is_err());
        assert!(validate_lease_request("l", "h", Duration::seconds(1)).is_ok());
        assert!(validate_lease_request("l", "h\0", Duration::seconds(1)).is_err());
        assert!(validate_quota_amount(0).is_err());
    }

    #[test]
    fn stored_time_truncates_to_microseconds() {
        use chrono::Timelike;
        let t = DateTime::UNIX_EPOCH + Duration::nanoseconds(1_234_567);
        assert_eq!(stored_time(t).nanosecond(), 1_234_000);
        let before = DateTime::UNIX_EPOCH - Duration::nanoseconds(1_500);
        assert_eq!(
            stored_time(before),
            DateTime::UNIX_EPOCH - Duration::microseconds(2)
        );
    }
}
