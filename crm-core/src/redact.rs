//! Masks for personal data in `Debug` output.
//!
//! `Debug` output ends up in logs, panic messages and test failures, so the types that
//! carry personal data (contacts, messages, webhook requests, inbound events, intake
//! rows) print it through these wrappers: ids, statuses, channels and times stay
//! visible, names, addresses, bodies and raw payloads do not. The wrappers show just
//! enough shape (a domain, the last two digits of a number, a length) to debug with.

use std::fmt;

/// Free text (a name, a body, a summary): shown as its length only.
pub(crate) struct Masked<'a>(pub(crate) &'a str);

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} chars>", self.0.chars().count())
    }
}

/// An optional piece of free text: `None`, or `Some(<redacted N chars>)`.
pub(crate) fn masked_opt(text: Option<&str>) -> Option<Masked<'_>> {
    text.map(Masked)
}

/// A channel address (email, phone number, profile URL, platform user id).
///
/// An email shows its domain (`***@example.com`), a phone number its last two digits
/// (`+***78`, also after a `whatsapp:` prefix), anything else its length.
pub(crate) struct MaskedAddress<'a>(pub(crate) &'a str);

impl fmt::Debug for MaskedAddress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = self.0.trim();
        if let Some((_, domain)) = address.rsplit_once('@') {
            // The domain is shown only when it looks like one; otherwise it may be text.
            let plain = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            return if plain {
                write!(f, "***@{domain}")
            } else {
                f.write_str("***@***")
            };
        }
        let number = address.strip_prefix("whatsapp:").unwrap_or(address);
        if let Some(digits) = number.strip_prefix('+')
            && digits.len() > 2
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let tail = digits.get(digits.len() - 2..).unwrap_or_default();
            return write!(f, "+***{tail}");
        }
        Masked(address).fmt(f)
    }
}

/// An optional address.
pub(crate) fn masked_address_opt(address: Option<&str>) -> Option<MaskedAddress<'_>> {
    address.map(MaskedAddress)
}

/// A JSON document that may hold personal data: shown as its shape only.
pub(crate) struct MaskedJson<'a>(pub(crate) &'a serde_json::Value);

impl fmt::Debug for MaskedJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use serde_json::Value;
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Object(map) => write!(f, "<redacted object, {} keys>", map.len()),
            Value::Array(items) => write!(f, "<redacted array, {} items>", items.len()),
            Value::String(s) => Masked(s).fmt(f),
            Value::Bool(_) | Value::Number(_) => f.write_str("<redacted scalar>"),
        }
    }
}

/// Raw bytes (a request body): shown as their length only.
pub(crate) struct MaskedBytes<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for MaskedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// String-to-string fields whose names are schema and whose values are data: keys
/// visible, values masked.
pub(crate) struct MaskedValues<'a, I>(pub(crate) I, pub(crate) std::marker::PhantomData<&'a ()>);

impl<'a, I> fmt::Debug for MaskedValues<'a, I>
where
    I: Iterator<Item = (&'a String, &'a String)> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.clone().map(|(k, v)| (k, Masked(v))))
            .finish()
    }
}

/// Keys visible, values masked, for a map of custom fields.
pub(crate) fn masked_values<'a, I>(entries: I) -> MaskedValues<'a, I>
where
    I: Iterator<Item = (&'a String, &'a String)> + Clone,
{
    MaskedValues(entries, std::marker::PhantomData)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_shape_not_content() {
        assert_eq!(
            format!("{:?}", Masked("Ada Lovelace")),
            "<redacted 12 chars>"
        );
        assert_eq!(
            format!("{:?}", MaskedAddress("ada@example.com")),
            "***@example.com"
        );
        assert_eq!(
            format!("{:?}", MaskedAddress("whatsapp:+4915112345678")),
            "+***78"
        );
        assert_eq!(format!("{:?}", MaskedAddress("ada@exa mple\"x")), "***@***");
        assert_eq!(
            format!("{:?}", MaskedAddress("https://www.linkedin.com/in/ada")),
            "<redacted 31 chars>"
        );
        let json = serde_json::json!({"email": "ada@example.com", "n": 1});
        assert_eq!(
            format!("{:?}", MaskedJson(&json)),
            "<redacted object, 2 keys>"
        );
        assert_eq!(format!("{:?}", MaskedBytes(b"hello")), "<redacted 5 bytes>");
        let fields: std::collections::BTreeMap<String, String> =
            [("city".to_owned(), "Berlin".to_owned())].into();
        assert_eq!(
            format!("{:?}", masked_values(fields.iter())),
            r#"{"city": <redacted 6 chars>}"#
        );
    }
}
