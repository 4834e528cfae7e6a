//! Resend / Standard Webhooks (Svix) verification and parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "resend")]

mod webhooks_support;

use std::sync::Arc;

use chrono::Duration;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_channels::webhooks::{Deduplicated, MemoryDeliveryLog, WebhookConfig};
use crm_core::model::Channel;
use crm_core::{InboundEvent, InboundWebhook, WebhookError, WebhookRequest};
use webhooks_support::{VerifyAt, at, post, secret, tampered};

// SW-1 (PROVIDERS.md §2), published by the Standard Webhooks reference libraries.
const SW1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW1_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW1_TS: i64 = 1_614_265_330;
const SW1_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
const SW1_EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
// Negative fixtures from the same suites.
const SW1_INVALID: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
const SW1_DECOY: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

fn hook() -> ResendWebhook {
    ResendWebhook::new(secret(SW1_SECRET), WebhookConfig::default()).unwrap()
}

fn sw_request(prefix: &str, id: &str, ts: &str, sig: &str, body: &[u8]) -> WebhookRequest {
    post(
        &[
            (&format!("{prefix}-id"), id),
            (&format!("{prefix}-timestamp"), ts),
            (&format!("{prefix}-signature"), sig),
        ],
        body,
    )
}

fn sw1(prefix: &str, sig: &str) -> WebhookRequest {
    sw_request(prefix, SW1_MSG_ID, &SW1_TS.to_string(), sig, SW1_PAYLOAD)
}

#[test]
fn sw1_sign_matches_published_vector() {
    let signed = hook()
        .verifier()
        .sign(SW1_MSG_ID, SW1_TS, SW1_PAYLOAD)
        .unwrap();
    assert_eq!(signed, SW1_EXPECTED);
}

#[test]
fn sw1_verifies_with_webhook_and_svix_headers() {
    for prefix in ["webhook", "svix"] {
        let req = sw1(prefix, SW1_EXPECTED);
        let verified = hook().verify_at(&req, at(SW1_TS)).unwrap();
        assert_eq!(verified.delivery_id(), Some(SW1_MSG_ID));
    }
}

#[test]
fn sw1_secret_without_prefix_verifies() {
    let hook = ResendWebhook::new(
        secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        WebhookConfig::default(),
    )
    .unwrap();
    assert!(
        hook.verify_at(&sw1("webhook", SW1_EXPECTED), at(SW1_TS))
            .is_ok()
    );
}

#[test]
fn sw1_published_invalid_signature_fails() {
    let err = hook()
        .verify_at(&sw1("webhook", SW1_INVALID), at(SW1_TS))
        .unwrap_err();
    assert_eq!(err, WebhookError::InvalidSignature);
}

#[test]
fn sw1_rotation_any_v1_entry_passes_and_other_versions_are_ignored() {
    let decoy_v2 = SW1_DECOY.replacen("v1,", "v2,", 1);
    let header = format!("{SW1_DECOY} {decoy_v2} {SW1_EXPECTED} {SW1_DECOY}");
    assert!(
        hook()
            .verify_at(&sw1("webhook", &header), at(SW1_TS))
            .is_ok()
    );

    let only_decoys = format!("{SW1_DECOY} {decoy_v2}");
    let err = hook()
        .verify_at(&sw1("webhook", &only_decoys), at(SW1_TS))
        .unwrap_err();
    assert_eq!(err, WebhookError::InvalidSignature);

    // The valid digest under another version is not accepted.
    let wrong_version = SW1_EXPECTED.replacen("v1,", "v2,", 1);
    let err = hook()
        .verify_at(&sw1("webhook", &wrong_version), at(SW1_TS))
        .unwrap_err();
    assert_eq!(err, WebhookError::InvalidSignature);
}

#[test]
fn sw1_empty_and_truncated_signatures_fail() {
    let truncated = &SW1_EXPECTED[..SW1_EXPECTED.len() - 4];
    for sig in [
        "v1,",
        "v1",
        "",
        truncated,
        "v1,%%%",
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ] {
        let err = hook()
            .verify_at(&sw1("webhook", sig), at(SW1_TS))
            .unwrap_err();
        assert_eq!(err, WebhookError::InvalidSignature, "{sig:?}");
    }
}

#[test]
fn sw1_tampered_body_and_wrong_secret_fail() {
    let req = sw_request(
        "svix",
        SW1_MSG_ID,
        &SW1_TS.to_string(),
        SW1_EXPECTED,
        &tampered(SW1_PAYLOAD),
    );
    assert_eq!(
        hook().verify_at(&req, at(SW1_TS)).unwrap_err(),
        WebhookError::InvalidSignature
    );

    let other = ResendWebhook::new(
        secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx"),
        WebhookConfig::default(),
    )
    .unwrap();
    let err = other
        .verify_at(&sw1("svix", SW1_EXPECTED), at(SW1_TS))
        .unwrap_err();
    assert_eq!(err, WebhookError::InvalidSignature);

    // A different id or timestamp changes the signed content.
    let req = sw_request(
        "webhook",
        "msg_other",
        &SW1_TS.to_string(),
        SW1_EXPECTED,
        SW1_PAYLOAD,
    );
    assert_eq!(
        hook().verify_at(&req, at(SW1_TS)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let req = sw_request(
        "webhook",
        SW1_MSG_ID,
        &(SW1_TS + 1).to_string(),
        SW1_EXPECTED,
        SW1_PAYLOAD,
    );
    assert_eq!(
        hook().verify_at(&req, at(SW1_TS)).unwrap_err(),
        WebhookError::InvalidSignature
    );
}

#[test]
fn sw1_tolerance_is_five_minutes_in_both_directions() {
    let req = sw1("webhook", SW1_EXPECTED);
    assert!(hook().verify_at(&req, at(SW1_TS + 300)).is_ok());
    assert!(hook().verify_at(&req, at(SW1_TS - 300)).is_ok());
    for now in [SW1_TS + 301, SW1_TS - 301] {
        assert_eq!(
            hook().verify_at(&req, at(now)).unwrap_err(),
            WebhookError::TimestampOutOfTolerance
        );
    }
}

#[test]
fn tolerance_is_configurable() {
    let config = WebhookConfig::default().with_tolerance(Duration::minutes(10));
    let hook = ResendWebhook::new(secret(SW1_SECRET), config).unwrap();
    let req = sw1("webhook", SW1_EXPECTED);
    assert!(hook.verify_at(&req, at(SW1_TS + 600)).is_ok());
    assert!(hook.verify_at(&req, at(SW1_TS + 601)).is_err());
    let strict = WebhookConfig::default().with_tolerance(Duration::seconds(1));
    let hook = ResendWebhook::new(secret(SW1_SECRET), strict).unwrap();
    assert_eq!(
        hook.verify_at(&req, at(SW1_TS + 2)).unwrap_err(),
        WebhookError::TimestampOutOfTolerance
    );
}

#[test]
fn missing_and_malformed_headers_are_typed() {
    let ts = SW1_TS.to_string();
    let all = [
        ("webhook-id", SW1_MSG_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", SW1_EXPECTED),
    ];
    for (skip, expected) in [
        (0, "webhook-id"),
        (1, "webhook-timestamp"),
        (2, "webhook-signature"),
    ] {
        let headers: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, h)| *h)
            .collect();
        let err = hook()
            .verify_at(&post(&headers, SW1_PAYLOAD), at(SW1_TS))
            .unwrap_err();
        assert_eq!(err, WebhookError::MissingHeader(expected));
    }
    let req = sw_request("webhook", SW1_MSG_ID, "hello", SW1_EXPECTED, SW1_PAYLOAD);
    assert!(matches!(
        hook().verify_at(&req, at(SW1_TS)).unwrap_err(),
        WebhookError::MalformedHeader {
            header: "webhook-timestamp",
            ..
        }
    ));
}

#[test]
fn invalid_secrets_are_refused() {
    for bad in ["", "whsec_", "   ", "whsec_!!!not-base64!!!"] {
        let err = ResendWebhook::new(secret(bad), WebhookConfig::default()).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidSecret(_)), "{bad:?}");
    }
}

#[test]
fn unpadded_secret_is_accepted() {
    // Self-computed with Python: key = bytes 1..=25, base64 "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGQ==".
    const SIG: &str = "v1,Fj4rn+v7SZKpblFKSbm67w2XuLfRmtqKmYu5gkKm79M=";
    for encoded in [
        "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGQ==",
        "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGQ",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGQ",
    ] {
        let hook = ResendWebhook::new(secret(encoded), WebhookConfig::default()).unwrap();
        let req = sw_request("webhook", "msg_1", "1700000000", SIG, br#"{"a":1}"#);
        assert!(hook.verify_at(&req, at(1_700_000_000)).is_ok(), "{encoded}");
    }
}

#[test]
fn debug_redacts_the_secret() {
    let text = format!("{:?}", hook());
    assert!(text.contains("redacted"));
    assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

fn parse(body: &str) -> Result<Vec<InboundEvent>, WebhookError> {
    let hook = hook();
    let sig = hook
        .verifier()
        .sign("msg_evt", SW1_TS, body.as_bytes())
        .unwrap();
    let req = sw_request(
        "svix",
        "msg_evt",
        &SW1_TS.to_string(),
        &sig,
        body.as_bytes(),
    );
    let verified = hook.verify_at(&req, at(SW1_TS)).unwrap();
    hook.parse(&verified)
}

fn outbound(kind: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"{kind}","created_at":"2024-11-22T23:41:12.126Z","data":{{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","created_at":"2024-11-22T23:41:11.894719+00:00","from":"Acme <onboarding@resend.dev>","to":["Delivered <delivered@resend.dev>"],"subject":"Sending this example"{extra}}}}}"#
    )
}

const EMAIL_ID: &str = "56761188-7520-42d8-8898-ff6fc54ce618";

#[test]
fn parses_delivered_opened_clicked_failed() {
    assert_eq!(
        parse(&outbound("email.delivered", "")).unwrap(),
        vec![InboundEvent::Delivered {
            channel: Channel::Email,
            provider_message_id: EMAIL_ID.into()
        }]
    );
    assert_eq!(
        parse(&outbound("email.opened", "")).unwrap(),
        vec![InboundEvent::Opened {
            channel: Channel::Email,
            provider_message_id: EMAIL_ID.into()
        }]
    );
    let click = r#","click":{"ipAddress":"122.115.53.11","link":"https://resend.com","timestamp":"2024-11-24T05:00:57.163Z","userAgent":"Mozilla/5.0"}"#;
    assert_eq!(
        parse(&outbound("email.clicked", click)).unwrap(),
        vec![InboundEvent::Clicked {
            channel: Channel::Email,
            provider_message_id: EMAIL_ID.into(),
            url: Some("https://resend.com".into())
        }]
    );
    assert_eq!(
        parse(&outbound(
            "email.failed",
            r#","failed":{"reason":"reached_daily_quota"}"#
        ))
        .unwrap(),
        vec![InboundEvent::Failed {
            channel: Channel::Email,
            provider_message_id: EMAIL_ID.into(),
            reason: Some("reached_daily_quota".into())
        }]
    );
}

#[test]
fn parses_bounced_and_complained_per_recipient() {
    let bounce = r#","bounce":{"diagnosticCode":["smtp; 550 5.5.0 Requested action not taken: mailbox unavailable"],"message":"The recipient's email address is on the suppression list.","subType":"Suppressed","type":"Permanent"}"#;
    assert_eq!(
        parse(&outbound("email.bounced", bounce)).unwrap(),
        vec![InboundEvent::Bounced {
            channel: Channel::Email,
            provider_message_id: Some(EMAIL_ID.into()),
            address: "delivered@resend.dev".into(),
            permanent: true
        }]
    );
    let transient = bounce.replace("Permanent", "Transient");
    assert!(matches!(
        parse(&outbound("email.bounced", &transient))
            .unwrap()
            .as_slice(),
        [InboundEvent::Bounced {
            permanent: false,
            ..
        }]
    ));
    assert_eq!(
        parse(&outbound("email.complained", "")).unwrap(),
        vec![InboundEvent::Complained {
            channel: Channel::Email,
            provider_message_id: Some(EMAIL_ID.into()),
            address: "delivered@resend.dev".into()
        }]
    );
}

#[test]
fn parses_received_as_reply() {
    let body = r#"{"type":"email.received","created_at":"2024-02-22T23:41:12.126Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","created_at":"2024-02-22T23:41:11.894719+00:00","from":"Jane Doe <jane@example.com>","to":["inbox@acme.test"],"bcc":[],"cc":[],"message_id":"<abc@example.com>","subject":"Re: hello","attachments":[]}}"#;
    assert_eq!(
        parse(body).unwrap(),
        vec![InboundEvent::Reply {
            channel: Channel::Email,
            from: "jane@example.com".into(),
            text: None,
            in_reply_to: None
        }]
    );
}

#[test]
fn parses_other_statuses_and_ignores_unrelated_types() {
    assert_eq!(
        parse(&outbound("email.delivery_delayed", "")).unwrap(),
        vec![InboundEvent::StatusChanged {
            channel: Channel::Email,
            provider_message_id: EMAIL_ID.into(),
            status: "delivery_delayed".into()
        }]
    );
    assert!(matches!(
        parse(&outbound("email.suppressed", r#","suppressed":{"reason":"previous_bounce"}"#)).unwrap().as_slice(),
        [InboundEvent::Failed { reason: Some(r), .. }] if r == "suppressed: previous_bounce"
    ));
    let contact = r#"{"type":"contact.created","created_at":"2024-11-22T23:41:12.126Z","data":{"id":"c1","email":"a@b.co"}}"#;
    assert_eq!(parse(contact).unwrap(), vec![]);
}

#[test]
fn malformed_payloads_are_typed_errors() {
    for body in [
        "not json",
        "{}",
        r#"{"type":"email.delivered","data":{}}"#,
        r#"{"type":"email.bounced","data":{"email_id":"x","to":[]}}"#,
    ] {
        assert!(
            matches!(parse(body).unwrap_err(), WebhookError::MalformedPayload(_)),
            "{body}"
        );
    }
}

#[test]
fn repeated_delivery_is_a_duplicate() {
    let hook = Deduplicated::new(hook(), Arc::new(MemoryDeliveryLog::default()));
    let req = sw1("svix", SW1_EXPECTED);
    assert!(hook.verify_at(&req, at(SW1_TS)).is_ok());
    assert_eq!(
        hook.verify_at(&req, at(SW1_TS + 60)).unwrap_err(),
        WebhookError::Duplicate(SW1_MSG_ID.into())
    );
    // A forged copy fails verification and is not reported as a duplicate.
    let forged = sw1("svix", SW1_INVALID);
    assert_eq!(
        hook.verify_at(&forged, at(SW1_TS)).unwrap_err(),
        WebhookError::InvalidSignature
    );
}
