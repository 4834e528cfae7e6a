//! Reading provider answers: optional fields at a path, and amounts in US dollars.
//!
//! Enrichment answers are large, loosely specified JSON documents in which any field may
//! be missing or `null`; these helpers read them without a typed struct per provider.

use crm_core::money::{Currency, Money};
use serde_json::Value;

/// The value at `path` (object keys), if every step exists and it is not `null`.
#[must_use]
pub fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .filter(|v| !v.is_null())
}

/// The non-blank text at `path`.
#[must_use]
pub fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    at(value, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The non-negative whole number at `path` that fits a `u32`.
#[must_use]
pub fn u32_at(value: &Value, path: &[&str]) -> Option<u32> {
    at(value, path)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// A whole-dollar amount at `path` as [`Money`] in USD (minor units are cents).
#[must_use]
pub fn usd_at(value: &Value, path: &[&str]) -> Option<Money> {
    let amount = at(value, path)?;
    let dollars = amount.as_i64().or_else(|| {
        amount
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.round() as i64)
    })?;
    let currency = Currency::new("USD").ok()?;
    Money::new(dollars.checked_mul(100)?, currency).ok()
}

/// `parts` that exist, joined with `", "`; `None` when none exists.
#[must_use]
pub fn join_present(parts: &[Option<String>]) -> Option<String> {
    let present: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
    (!present.is_empty()).then(|| present.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_read_leniently() {
        let v = json!({"a": {"b": " x ", "n": 12, "nil": null, "rev": 1500000.4}});
        assert_eq!(text_at(&v, &["a", "b"]).as_deref(), Some("x"));
        assert_eq!(u32_at(&v, &["a", "n"]), Some(12));
        assert!(at(&v, &["a", "nil"]).is_none());
        assert!(text_at(&v, &["a", "missing", "deeper"]).is_none());
        assert_eq!(
            usd_at(&v, &["a", "rev"]).unwrap().minor_units(),
            150_000_000
        );
        assert_eq!(
            join_present(&[Some("Berlin".into()), None, Some("DE".into())]).as_deref(),
            Some("Berlin, DE")
        );
    }
}
