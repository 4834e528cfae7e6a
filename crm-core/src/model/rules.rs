//! The input rules every store applies, written once.
//!
//! Each model type's `validate` builds on these, and stores call `validate` (and the
//! argument checks below) instead of repeating the rules per backend, so a rule holds
//! on every store alike.
//!
//! Text and JSON never hold U+0000: PostgreSQL `text` and `jsonb` cannot store it, so
//! every store refuses it with the same [`ValidationError`] instead of one backend
//! accepting it and the other failing with a server message.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};

use crate::error::ValidationError;

/// What a refused NUL character is reported as.
const NUL_REASON: &str = "must not contain NUL characters";

/// `Invalid` when `value` holds U+0000.
pub(crate) fn no_nul(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        Err(ValidationError::new(field, NUL_REASON))
    } else {
        Ok(())
    }
}

/// [`no_nul`] for an optional text field.
pub(crate) fn no_nul_opt(field: &'static str, value: Option<&str>) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| no_nul(field, v))
}

/// `Invalid` when any key or string of `value` holds U+0000.
pub(crate) fn no_nul_json(
    field: &'static str,
    value: &serde_json::Value,
) -> Result<(), ValidationError> {
    if super::contains_nul(value) {
        Err(ValidationError::new(field, NUL_REASON))
    } else {
        Ok(())
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
    require_text("lease.name", name)?;
    require_text("lease.holder", holder)?;
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
        assert!(no_nul_json("f", &serde_json::json!({"k": ["x\0"]})).is_err());
        assert!(no_nul_json("f", &serde_json::json!({"k\0": 1})).is_err());
        assert!(no_nul_json("f", &serde_json::json!({"k": ["x"]})).is_ok());
        let map = BTreeMap::from([("k".to_owned(), "v\0".to_owned())]);
        assert!(no_nul_map("f", &map).is_err());
        assert!(require_text("f", " ").is_err());
        assert!(require_text("f", "a\0").is_err());
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
