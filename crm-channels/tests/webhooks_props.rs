//! Property tests: every verifier and parser returns (never panics) on arbitrary bytes,
//! headers, URLs and clocks, and on structurally plausible but random payloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![allow(unused_imports, dead_code)]

mod webhooks_support;

use chrono::{DateTime, Utc};
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::redact::{redact, redact_bytes};
use crm_core::secret::SecretString;
use crm_core::{InboundWebhook, WebhookRequest};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::Value;
use webhooks_support::{VerifyAt, unchecked};

/// Header names any verifier reads.
const HEADER_NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-twilio-signature",
    "i-twilio-idempotency-token",
    "x-hub-signature-256",
    "x-cal-signature-256",
    "calendly-webhook-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
];

/// Keys the parsers look for, so random JSON reaches their deeper branches.
const JSON_KEYS: &[&str] = &[
    "type",
    "data",
    "to",
    "from",
    "email_id",
    "bounce",
    "click",
    "link",
    "failed",
    "reason",
    "suppressed",
    "object",
    "entry",
    "messaging",
    "message",
    "sender",
    "id",
    "text",
    "is_echo",
    "reply_to",
    "mid",
    "read",
    "triggerEvent",
    "payload",
    "uid",
    "bookingId",
    "attendees",
    "email",
    "responses",
    "value",
    "startTime",
    "rescheduleUid",
    "event",
    "uri",
    "scheduled_event",
    "start_time",
    "actions",
    "action_id",
    "block_id",
    "user",
    "challenge",
    "event_id",
    "trigger_id",
];

const JSON_STRINGS: &[&str] = &[
    "email.delivered",
    "email.bounced",
    "email.complained",
    "email.opened",
    "email.clicked",
    "email.failed",
    "email.received",
    "email.suppressed",
    "email.sent",
    "Permanent",
    "instagram",
    "BOOKING_CREATED",
    "BOOKING_RESCHEDULED",
    "BOOKING_CANCELLED",
    "invitee.created",
    "invitee.canceled",
    "block_actions",
    "url_verification",
    "approve",
    "reject:1",
    "2023-05-25T09:30:00Z",
    "a@b.co",
    "",
    "\u{0}",
    "é",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(JSON_STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(JSON_KEYS), inner), 0..6).prop_map(
                |pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

/// Raw bytes, random JSON, or random JSON wrapped as a Slack/Twilio form body.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &v.to_string())
                .finish()
                .into_bytes()
        }),
        prop::collection::vec((".{0,8}", ".{0,16}"), 0..8).prop_map(|pairs| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes()
        }),
    ]
}

/// Header values: random bytes (kept when `http` accepts them) or plausible shapes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        "(v1|v2|v1a|t|sha256|v0)[,=][A-Za-z0-9+/=]{0,70}( v1,[A-Za-z0-9+/=]{0,48}){0,3}"
            .prop_map(String::into_bytes),
        "t=-?[0-9]{0,20},v1=[0-9a-f]{0,70}(,v1=[0-9a-fA-F]{0,64})?".prop_map(String::into_bytes),
        "-?[0-9]{0,22}".prop_map(String::into_bytes),
        Just(b"no-secret-provided".to_vec()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    prop::collection::vec((prop::sample::select(HEADER_NAMES), header_value()), 0..10)
}

fn url_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        "(https?|ftp)://([a-z]+(:[a-z]*)?@)?(\\[[0-9a-f:]*\\]|[a-z.]{0,12})(:[0-9]{0,6})?(/[a-z]{0,6}){0,2}(\\?[a-zA-Z0-9=&%]{0,40})?(#.{0,4})?",
        "https://h.test/x\\?bodySHA256=[0-9a-fA-F]{0,70}(&a=[0-9]{0,3})?",
    ]
}

fn build(url: String, headers: Vec<(&'static str, Vec<u8>)>, body: Vec<u8>) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    WebhookRequest {
        method: Method::POST,
        url,
        headers: map,
        body,
    }
}

fn now() -> impl Strategy<Value = DateTime<Utc>> {
    (-100_000_000_000i64..100_000_000_000)
        .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
}

/// Verify and parse; either may fail, neither may panic.
fn exercise(hook: &dyn InboundWebhook, request: &WebhookRequest, now: DateTime<Utc>) {
    if let Ok(verified) = hook.verify_at(request, now) {
        let _ = hook.parse(&verified);
    }
    let _ = hook.parse(&unchecked(request));
}

fn hooks() -> Vec<Box<dyn InboundWebhook>> {
    #[allow(unused_mut)]
    let mut hooks: Vec<Box<dyn InboundWebhook>> = Vec::new();
    let key = || SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let config = WebhookConfig::default();
    #[cfg(feature = "resend")]
    hooks.push(Box::new(
        crm_channels::webhooks::resend::ResendWebhook::new(key(), config).unwrap(),
    ));
    #[cfg(feature = "twilio")]
    hooks.push(Box::new(
        crm_channels::webhooks::twilio::TwilioWebhook::new(key(), config).unwrap(),
    ));
    #[cfg(feature = "instagram")]
    hooks.push(Box::new(
        crm_channels::webhooks::meta::InstagramWebhook::new(key(), config).unwrap(),
    ));
    #[cfg(feature = "cal-com")]
    hooks.push(Box::new(
        crm_channels::webhooks::cal_com::CalComWebhook::new(key(), config).unwrap(),
    ));
    #[cfg(feature = "calendly")]
    hooks.push(Box::new(
        crm_channels::webhooks::calendly::CalendlyWebhook::new(key(), config).unwrap(),
    ));
    #[cfg(feature = "slack")]
    hooks.push(Box::new(
        crm_channels::webhooks::slack::SlackWebhook::new(key(), config).unwrap(),
    ));
    let _ = (key, config);
    hooks
}

proptest! {
    #[test]
    fn verifiers_and_parsers_never_panic(
        url in url_text(),
        headers in headers(),
        body in body(),
        now in now(),
    ) {
        let request = build(url, headers, body);
        for hook in hooks() {
            exercise(hook.as_ref(), &request, now);
        }
    }

    #[test]
    fn constructors_never_panic(secret in ".{0,80}", tolerance in any::<i64>()) {
        let config = WebhookConfig::default()
            .with_tolerance(chrono::Duration::seconds(tolerance.clamp(-1_000_000_000, 1_000_000_000)));
        let _ = config;
        #[cfg(feature = "resend")]
        let _ = crm_channels::webhooks::resend::ResendWebhook::new(SecretString::from(secret.clone()), config);
        #[cfg(feature = "slack")]
        let _ = crm_channels::webhooks::slack::SlackWebhook::new(SecretString::from(secret.clone()), config);
        let _ = secret;
    }

    #[test]
    fn redaction_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), text in ".{0,256}") {
        let _ = redact_bytes(&bytes);
        let _ = redact(&text);
    }

    #[test]
    fn generated_emails_and_phones_are_masked(
        local in "[a-z][a-z0-9._%+-]{0,10}[a-z0-9]",
        domain in "[a-z][a-z0-9-]{0,8}[a-z0-9]\\.(com|io|co\\.uk)",
        digits in "[1-9][0-9]{6,13}",
        before in "[ ,;\"<(=]{0,2}",
    ) {
        let email = format!("{local}@{domain}");
        let phone = format!("+{digits}");
        let out = redact(&format!("x{before}{email} and{before}{phone}"));
        prop_assert!(!out.contains(&email), "{}", out);
        prop_assert!(!out.contains(&digits), "{}", out);
    }

    #[test]
    fn escaped_emails_and_phones_are_masked(
        local in "[a-z][a-z0-9._+-]{0,10}[a-z0-9]",
        domain in "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        at in prop::sample::select(vec!["@", "%40", "\\u0040", "\\\\u0040", "&#64;", "&#x40;"]),
        dot in prop::sample::select(vec![".", "%2E", "%2e", "\\u002e"]),
        plus in prop::sample::select(vec!["+", "%2B", "\\u002b"]),
        digits in "[1-9][0-9]{6,13}",
        before in "[ ,;\"<(=:]{0,2}",
    ) {
        let out = redact(&format!("x{before}{local}{at}{domain}{dot}com and{before}{plus}{digits}"));
        prop_assert!(!out.contains(&format!("{local}{at}")), "{}", out);
        prop_assert!(!out.contains(&digits), "{}", out);
    }

    /// Wherever an address sits relative to the cut, no part of it survives into an
    /// error message: masking happens before truncation.
    #[test]
    fn error_messages_never_show_part_of_an_address(
        filler in 150usize..260,
        // Letters that appear neither in the filler, the masks nor "rejected".
        local in "[fghknopqsuvwyz]{6,12}",
        domain in "[fghknopqsuvwyz]{6,12}",
        at in prop::sample::select(vec!["@", "%40", "\\u0040"]),
        json in any::<bool>(),
    ) {
        let text = format!("{} {local}{at}{domain}.com rejected", "x".repeat(filler));
        let body = if json {
            serde_json::json!({"message": text}).to_string()
        } else {
            text
        };
        let detail = crm_channels::http::ErrorDetail::from_body(body.as_bytes());
        let message = detail.message.unwrap_or_default();
        prop_assert!(!message.contains(&local[..3]), "{}", message);
        prop_assert!(!message.contains(&domain[..3]), "{}", message);
    }
}

#[cfg(feature = "instagram")]
proptest! {
    #[test]
    fn subscription_handshake_never_panics(query in ".{0,128}", token in ".{0,16}") {
        let hook = crm_channels::webhooks::meta::InstagramWebhook::new(
            SecretString::from("app-secret"),
            WebhookConfig::default(),
        )
        .unwrap();
        let _ = hook.verify_subscription(&query, &SecretString::from(token));
    }
}
