//! Redaction of email addresses and phone numbers before a payload reaches a log.
//!
//! Webhook payloads carry personal data. Verifiers log them only at `DEBUG` level and
//! only through [`redact_bytes`]. Redaction errs on the side of hiding: anything shaped
//! like an address (`local@domain.tld`) or a phone number (`+` and 7 to 15 digits, or 10
//! to 15 digits written with separators such as `(555) 123-4567`) is masked. Plain digit
//! runs (ids, timestamps) and dates are left alone. The `@` (and a domain's dots, and a
//! phone number's `+`) may also be percent-encoded (`jane%40example.com`), JSON-escaped
//! once or twice (`jane\u0040example.com`), or an HTML character reference
//! (`jane&#64;example.com`): provider error text quotes request bodies in all of these.

/// What an email address is replaced with.
pub const EMAIL_MASK: &str = "[email]";
/// What a phone number is replaced with.
pub const PHONE_MASK: &str = "[phone]";
/// At most this many bytes of a redacted payload are logged.
pub const MAX_LOGGED_BYTES: usize = 4096;

/// Masks email addresses and phone numbers in `text`.
#[must_use]
pub fn redact(text: &str) -> String {
    let without_emails = replace_spans(text, &email_spans(text.as_bytes()), EMAIL_MASK);
    replace_spans(
        &without_emails,
        &phone_spans(without_emails.as_bytes()),
        PHONE_MASK,
    )
}

/// Redacts a raw payload for logging: invalid UTF-8 is replaced, emails and phone
/// numbers are masked, and the result is cut to [`MAX_LOGGED_BYTES`] (after masking, so a
/// cut never exposes half an address).
#[must_use]
pub fn redact_bytes(body: &[u8]) -> String {
    let mut text = redact(&String::from_utf8_lossy(body));
    if text.len() > MAX_LOGGED_BYTES {
        let mut cut = MAX_LOGGED_BYTES;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn is_local_char(b: u8) -> bool {
    // The backslash, so that a JSON-escaped local part (`jane\u002bx`) is masked whole.
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\\')
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Whether `bytes` at `at` starts with `token`, ASCII case-insensitively.
fn starts_with_ci(bytes: &[u8], at: usize, token: &[u8]) -> bool {
    bytes
        .get(at..at + token.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(token))
}

/// How `@` may be written in provider text: plain, percent-encoded (a URL or form
/// body), JSON-escaped (once or twice, when JSON was embedded in a JSON string), or as
/// an HTML character reference.
const AT_SIGNS: [&[u8]; 6] = [b"@", b"%40", b"\\u0040", b"\\\\u0040", b"&#64;", b"&#x40;"];
/// How `.` may be written inside an escaped domain.
const DOTS: [&[u8]; 4] = [b".", b"%2e", b"\\u002e", b"\\\\u002e"];
/// How `+` may be written before a phone number.
const PLUS_SIGNS: [&[u8]; 4] = [b"+", b"%2b", b"\\u002b", b"\\\\u002b"];

/// The length of the first of `tokens` that `bytes` has at `at`.
fn token_len(bytes: &[u8], at: usize, tokens: &[&[u8]]) -> Option<usize> {
    tokens
        .iter()
        .find(|t| starts_with_ci(bytes, at, t))
        .map(|t| t.len())
}

/// Byte ranges of email-shaped text, with `@` and the domain's dots written plainly or
/// escaped (see [`AT_SIGNS`]). Every boundary falls on an ASCII byte.
fn email_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut floor = 0; // spans must not overlap the previous one
    let mut at = 0;
    while at < bytes.len() {
        let Some(at_len) = token_len(bytes, at, &AT_SIGNS) else {
            at += 1;
            continue;
        };
        let mut start = at;
        while start > floor && bytes.get(start - 1).is_some_and(|b| is_local_char(*b)) {
            start -= 1;
        }
        while start < at && bytes.get(start) == Some(&b'.') {
            start += 1;
        }
        // The domain, read token by token: `(end of token, is a dot)`.
        let mut tokens: Vec<(usize, bool)> = Vec::new();
        let mut end = at + at_len;
        loop {
            if let Some(len) = token_len(bytes, end, &DOTS) {
                end += len;
                tokens.push((end, true));
            } else if bytes.get(end).is_some_and(|b| is_domain_char(*b)) {
                end += 1;
                tokens.push((end, false));
            } else {
                break;
            }
        }
        while tokens
            .last()
            .is_some_and(|&(token_end, dot)| dot || bytes.get(token_end - 1) == Some(&b'-'))
        {
            tokens.pop();
        }
        let dots = tokens.iter().filter(|(_, dot)| *dot).count();
        let empty_label = tokens.first().is_none_or(|(_, dot)| *dot)
            || tokens.windows(2).any(|w| w[0].1 && w[1].1);
        match tokens.last() {
            Some(&(domain_end, _)) if start < at && dots > 0 && !empty_label => {
                spans.push((start, domain_end));
                floor = domain_end;
                at = domain_end;
            }
            _ => at += at_len,
        }
    }
    spans
}

fn is_phone_separator(b: u8, international: bool) -> bool {
    matches!(b, b' ' | b'-' | b'(' | b')') || (international && b == b'.')
}

/// Byte ranges of phone-shaped text. Every boundary falls on an ASCII byte.
fn phone_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or_default();
        let next = bytes.get(i + 1).copied().unwrap_or_default();
        let prev = if i == 0 {
            None
        } else {
            bytes.get(i - 1).copied()
        };
        let plus_len = token_len(bytes, i, &PLUS_SIGNS).unwrap_or(0);
        let international = plus_len > 0 && bytes.get(i + plus_len).is_some_and(u8::is_ascii_digit);
        let local_start = (byte.is_ascii_digit() || (byte == b'(' && next.is_ascii_digit()))
            && prev.is_none_or(|p| {
                !(p.is_ascii_alphanumeric() || matches!(p, b'.' | b':' | b'-' | b'_' | b'/' | b'+'))
            });
        if !international && !local_start {
            i += 1;
            continue;
        }
        let mut j = if international { i + plus_len } else { i };
        let (mut digits, mut separated, mut last_digit_end) = (0usize, false, j);
        while let Some(b) = bytes.get(j).copied() {
            if b.is_ascii_digit() {
                digits += 1;
                last_digit_end = j + 1;
            } else if is_phone_separator(b, international) {
                separated |= digits > 0;
            } else {
                break;
            }
            j += 1;
        }
        let after = bytes.get(last_digit_end).copied();
        let right_ok = after.is_none_or(|a| !(a.is_ascii_alphanumeric() || a == b':'));
        let shaped = if international {
            (7..=15).contains(&digits)
        } else {
            (10..=15).contains(&digits) && separated
        };
        if shaped && right_ok {
            spans.push((i, last_digit_end));
        }
        i = j.max(i + 1);
    }
    spans
}

fn replace_spans(text: &str, spans: &[(usize, usize)], mask: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for &(start, end) in spans {
        out.push_str(text.get(copied..start).unwrap_or_default());
        out.push_str(mask);
        copied = end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails_in_json_and_display_names() {
        assert_eq!(
            redact(r#"{"from":"Ann <ann.lee+x@mail.example.com>","to":["b@c.io"]}"#),
            r#"{"from":"Ann <[email]>","to":["[email]"]}"#
        );
    }

    #[test]
    fn masks_phone_numbers() {
        assert_eq!(
            redact("From=whatsapp:+14155238886"),
            "From=whatsapp:[phone]"
        );
        assert_eq!(redact("call (555) 123-4567 now"), "call [phone] now");
        assert_eq!(redact("+1 888-888-8888"), "[phone]");
    }

    #[test]
    fn leaves_ids_dates_and_timestamps() {
        let text =
            r#"{"t":1614265330,"d":"2023-05-24T09:30:00.538Z","ts":"1503435956.000247","x":"a@b"}"#;
        assert_eq!(redact(text), text);
    }

    #[test]
    fn masks_percent_encoded_json_escaped_and_html_encoded_addresses() {
        for (input, expected) in [
            ("to=jane%40example.com&x=1", "to=[email]&x=1"),
            (r#"{"to":"jane\u0040example.com"}"#, r#"{"to":"[email]"}"#),
            (
                r#"{"m":"{\"to\":\"jane\\u0040example.com\"}"}"#,
                r#"{"m":"{\"to\":\"[email]\"}"}"#,
            ),
            ("mail jane&#64;example.com now", "mail [email] now"),
            ("mail jane&#x40;Example.COM now", "mail [email] now"),
            ("to=jane%40example%2Ecom&x=1", "to=[email]&x=1"),
            ("to=jane.doe%2Bnews%40example.com", "to=[email]"),
            ("To=%2B4915112345678&x=1", "To=[phone]&x=1"),
            (r#"{"to":"\u002b4915112345678"}"#, r#"{"to":"[phone]"}"#),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn escaped_at_signs_without_an_address_are_left_alone() {
        for text in ["50%40 off", "a%40b", r"x\u0040y", "&#64;", "%40example.com"] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn truncates_after_masking_on_a_char_boundary() {
        let long = "é".repeat(MAX_LOGGED_BYTES);
        let out = redact_bytes(long.as_bytes());
        assert!(out.len() <= MAX_LOGGED_BYTES + 3);
        assert!(out.ends_with("..."));
    }
}
