//! Rate-limit and `Retry-After` headers.

use std::time::Duration;

use ::http::HeaderMap;
use chrono::{DateTime, Utc};
use crm_core::enrichment_provider::RateLimitState;

/// Which response headers carry a provider's rate-limit state. The first header of
/// each list that is present wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// Requests allowed per window.
    pub limit: &'static [&'static str],
    /// Requests left in the window.
    pub remaining: &'static [&'static str],
    /// Seconds until the window resets (or a Unix time, which is converted).
    pub reset: &'static [&'static str],
}

impl RateLimitHeaders {
    /// IETF `ratelimit-*` (draft-ietf-httpapi-ratelimit-headers) and the older
    /// `x-ratelimit-*` spelling.
    pub const IETF: Self = Self {
        limit: &["ratelimit-limit", "x-ratelimit-limit"],
        remaining: &["ratelimit-remaining", "x-ratelimit-remaining"],
        reset: &["ratelimit-reset", "x-ratelimit-reset"],
    };
}

/// The first integer in a header value: `"100"`, `"100, 100;w=60"` and `"\"5\""` give
/// 100, 100 and 5.
fn leading_integer(value: &str) -> Option<u64> {
    let digits: String = value
        .trim_start_matches(|c: char| c.is_whitespace() || c == '"')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn first_header_u64(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(leading_integer)
    })
}

/// Reset values above this are Unix times rather than a number of seconds.
const UNIX_TIME_THRESHOLD: u64 = 1_000_000_000;

/// The rate-limit state in IETF `ratelimit-*` or `x-ratelimit-*` headers; `None` when
/// the response carries none of them.
#[must_use]
pub fn parse_rate_limit(headers: &HeaderMap, now: DateTime<Utc>) -> Option<RateLimitState> {
    parse_rate_limit_with(headers, &RateLimitHeaders::IETF, now)
}

/// The rate-limit state in the headers `names` lists; `None` when none is present.
#[must_use]
pub fn parse_rate_limit_with(
    headers: &HeaderMap,
    names: &RateLimitHeaders,
    now: DateTime<Utc>,
) -> Option<RateLimitState> {
    let limit = first_header_u64(headers, names.limit);
    let remaining = first_header_u64(headers, names.remaining);
    let reset_after = first_header_u64(headers, names.reset).map(|reset| {
        if reset > UNIX_TIME_THRESHOLD {
            let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
            Duration::from_secs(reset.saturating_sub(now_secs))
        } else {
            Duration::from_secs(reset)
        }
    });
    (limit.is_some() || remaining.is_some() || reset_after.is_some()).then_some(RateLimitState {
        limit,
        remaining,
        reset_after,
    })
}

/// Parses a `Retry-After` value: delta seconds (`"120"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, measured from `now`; a past date gives zero).
#[must_use]
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// How long the provider asked us to wait: `Retry-After` first; otherwise, when the
/// rate-limit headers say nothing is left, the time until the window resets.
#[must_use]
pub fn retry_after_from(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(wait) = headers
        .get(::http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
    {
        return Some(wait);
    }
    parse_rate_limit(headers, now)
        .filter(|state| state.remaining == Some(0))
        .and_then(|state| state.reset_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = at("2015-10-21T07:27:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn rate_limit_headers_are_read_in_both_spellings() {
        let now = at("2024-01-01T00:00:00Z");
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", HeaderValue::from_static("5"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("2"));
        let state = parse_rate_limit(&h, now).unwrap();
        assert_eq!(state.limit, Some(5));
        assert_eq!(state.remaining, Some(0));
        assert_eq!(state.reset_after, Some(Duration::from_secs(2)));
        assert_eq!(retry_after_from(&h, now), Some(Duration::from_secs(2)));

        let mut x = HeaderMap::new();
        x.insert(
            "x-ratelimit-limit",
            HeaderValue::from_static("100, 100;w=60"),
        );
        let reset = now.timestamp() + 30;
        x.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let state = parse_rate_limit(&x, now).unwrap();
        assert_eq!(state.limit, Some(100));
        assert_eq!(state.reset_after, Some(Duration::from_secs(30)));
        assert!(parse_rate_limit(&HeaderMap::new(), now).is_none());
    }
}
